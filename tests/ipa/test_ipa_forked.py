"""A trajectory split at a context fork (several rows, one trajectory) must train exactly like the unsplit one:
Eq. 7 over the trajectory's global chunk index, one count in group statistics and seq-mean denominators."""

import pytest
import torch

from ipa import AGG_MODES, ALGORITHMS, LossInputs, chunk_returns, compute_loss, group_advantages, local_denominator

# Trajectory A: 5 one- or two-token chunks; forked after chunk 2, so its second row restarts with a new prompt.
WHOLE_IDS = [[-1, 0, 0, -1, 1, -1, 2, -1, 3, 3, -1, 4], [-1, 0, 0, -1, 1, 1, -1, -1, -1, -1, -1, -1]]
SPLIT_IDS = [[-1, 0, 0, -1, 1, -1, 2], [-1, -1, 3, 3, -1, 4, -1], [-1, 0, 0, -1, 1, 1, -1]]
WHOLE_TO_SPLIT = {(0, 1): (0, 1), (0, 2): (0, 2), (0, 4): (0, 4), (0, 6): (0, 6), (0, 8): (1, 2), (0, 9): (1, 3),
                  (0, 11): (1, 5), (1, 1): (2, 1), (1, 2): (2, 2), (1, 4): (2, 4), (1, 5): (2, 5)}


def _cases(reward_a: float):
    g = torch.Generator().manual_seed(1)
    whole_ids, split_ids = torch.tensor(WHOLE_IDS), torch.tensor(SPLIT_IDS)
    values = {name: -torch.rand(2, 12, generator=g) for name in ("logp", "old", "mu")}
    split = {name: torch.zeros(3, 7) for name in values}
    for (b, t), (sb, st) in WHOLE_TO_SPLIT.items():
        for name in values:
            split[name][sb, st] = values[name][b, t]
    rewards = torch.tensor([reward_a, 0.25])
    whole = LossInputs(values["logp"].requires_grad_(), values["old"], values["mu"], whole_ids >= 0, whole_ids,
                       rewards, group_ids=torch.tensor([0, 0]), advantages=torch.tensor([0.3, -0.3]))
    pieces = LossInputs(split["logp"].requires_grad_(), split["old"], split["mu"], split_ids >= 0, split_ids,
                        rewards[[0, 0, 1]], group_ids=torch.tensor([0, 0, 0]),
                        advantages=torch.tensor([0.3, 0.3, -0.3]), trajectory_ids=torch.tensor([7, 7, 9]),
                        trajectory_chunks=torch.tensor([5, 5, 2]))
    return whole, pieces


def test_returns_use_the_trajectory_global_chunk_index():
    _, pieces = _cases(1.0)
    G = chunk_returns(pieces.rewards, pieces.chunk_ids, 0.5, trajectory_chunks=pieces.trajectory_chunks)
    torch.testing.assert_close(G[0, :3], torch.tensor([0.0625, 0.125, 0.25]))  # first piece: no R on chunk 2
    torch.testing.assert_close(G[1, 3:5], torch.tensor([0.5, 1.0]))  # only the trajectory's last chunk gets R


def test_group_statistics_count_trajectories():
    rewards, groups = torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0, 0, 0])
    adv = group_advantages(rewards, groups, trajectory_ids=torch.tensor([0, 0, 1]))
    torch.testing.assert_close(adv, group_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))[[0, 0, 1]])
    mask = torch.ones(3, 2, dtype=torch.bool)
    assert float(local_denominator(mask, "seq-mean-token-sum", torch.tensor([0, 0, 1]))) == pytest.approx(2.0)


@pytest.mark.parametrize("reward_a", [1.0, -1.0])
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_split_trajectory_trains_like_the_unsplit_one(algorithm, agg, reward_a):
    whole, pieces = _cases(reward_a)
    params = {"agg": agg, "norm_length": 12.0}
    if algorithm == "reinforce":
        params["baseline"] = "rloo"
    if algorithm == "gspo":
        params.update(clip_eps=10.0, clip_eps_high=10.0)
    a, b = compute_loss(algorithm, whole, **params), compute_loss(algorithm, pieces, **params)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(b.loss, a.loss)
    for (wb, wt), (sb, st) in WHOLE_TO_SPLIT.items():
        torch.testing.assert_close(pieces.logp.grad[sb, st], whole.logp.grad[wb, wt])
