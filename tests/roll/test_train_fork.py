"""Batch building off the easy path: a trajectory split at a context fork, error-masked turns, sequences cut at
trainer.max_seq_len. What the trainer hands `ipa.compute_loss` (MicroBatch.loss_inputs) must give the loss of the
whole trajectory."""
from __future__ import annotations

import pytest
import torch

from iflow.trajectory import Trajectory, Turn
from ipa import AGG_MODES, ALGORITHMS, chunk_returns, compute_loss, local_denominator
from roll.config.training import TrainerConfig
from roll.trainer.batch import build_samples, collate, plan

GAMMA = 0.5


def _trajectory(tid: str, group: str, reward: float, turns: int, fork_at: int | None = None,
                masks: list[int] | None = None, turn_rewards: list[float | None] | None = None,
                reply_len: int = 3) -> Trajectory:
    """Turn k: completion of `reply_len` tokens with engine log-prob -0.1(k+1); observation [100+k, 101+k] after it.
    At `fork_at` the context is rewritten (a summary replaces the history), so a new training sequence starts."""
    records, prompt = [], [1, 2, 3]
    for k in range(turns):
        if fork_at is not None and k == fork_at:
            prompt = [1, 2, 3, 99]
        completion = [10 * k + j + 1 for j in range(reply_len)]
        records.append(Turn(index=k, prompt_ids=list(prompt), completion_ids=completion,
                            logprobs=[-0.1 * (k + 1)] * reply_len, fork=fork_at == k,
                            train_mask=1 if masks is None else masks[k],
                            reward=None if turn_rewards is None else turn_rewards[k]))
        prompt = prompt + completion + [100 + k, 101 + k]
    return Trajectory(id=tid, task_id=group, group_id=group, turns=records, reward=reward)


def _one_batch(trajectories, **kwargs):
    samples = build_samples(trajectories, **kwargs).samples
    ((mb,),) = plan(samples, pad_id=0, max_tokens=10_000, world_size=1)[0]
    return samples, mb


def _loss(mb, algorithm: str, agg: str) -> float:
    """The loss of π_θ = μ + 0.1, π_old = μ + 0.05 on every token (so forked and unforked layouts see the same
    values per turn), with the global denominator the driver computes."""
    theta, old = mb.engine_logp + 0.1, mb.engine_logp + 0.05
    mb.old_logp = old
    if algorithm == "ppo":
        mb.advantages = torch.where(mb.rewards > 0, 0.7, -0.7)
    params = {"agg": agg, "norm_length": 64.0,
              "global_denominator": float(local_denominator(mb.loss_mask, agg, mb.trajectory_ids))}
    if algorithm == "ipa":
        params["gamma"] = GAMMA
    if algorithm == "gspo":
        params.update(clip_eps=10.0, clip_eps_high=10.0)
    if algorithm == "reinforce":
        params["baseline"] = "rloo"
    return float(compute_loss(algorithm, mb.loss_inputs(theta), **params).loss)


def test_forked_pieces_keep_the_trajectory_chunk_index_and_only_the_last_chunk_gets_r():
    samples, mb = _one_batch([_trajectory("a", "g", 1.0, 5, fork_at=3)], error_masking=False)
    assert len(samples) == 2 and [s.trajectory_chunks for s in samples] == [5, 5]
    assert sorted({c for c in samples[1].chunk_ids if c >= 0}) == [3, 4]  # global, not restarted at 0
    G = chunk_returns(mb.rewards, mb.chunk_ids, GAMMA, trajectory_chunks=mb.trajectory_chunks)
    expected = [GAMMA ** (4 - k) for k in range(5)]
    for row in range(2):
        for k in {int(c) for c in mb.chunk_ids[row] if c >= 0}:
            assert float(G[row, k]) == pytest.approx(expected[k])  # piece 1's last chunk (k=2) gets γ²R, not R
    assert mb.trajectory_ids.tolist() == [0, 0]


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_forked_trajectory_trains_like_the_unforked_one(algorithm: str, agg: str):
    """Same turns, same rewards, same log-probs per turn: forking the context must not change the loss (group
    mean/std, seq-mean denominators and returns all count the trajectory once)."""
    def batch(fork_at):
        return _one_batch([_trajectory("a", "g", 1.0, 5, fork_at=fork_at), _trajectory("b", "g", 0.0, 2),
                           _trajectory("c", "g", 0.5, 3)], error_masking=False)[1]
    assert _loss(batch(3), algorithm, agg) == pytest.approx(_loss(batch(None), algorithm, agg), rel=1e-5)


def test_forked_pieces_share_a_micro_batch_and_mini_batch():
    trajectories = [_trajectory(f"t{i}", f"g{i}", 1.0, 4, fork_at=2) for i in range(4)]
    samples = build_samples(trajectories, error_masking=False).samples
    layout = plan(samples, pad_id=0, max_tokens=40, world_size=2, mini_batches=2)
    for mini in layout:
        for rank in mini:
            for mb in rank:
                rows = [samples[i].trajectory for i in mb.sample_index.tolist() if i >= 0]
                assert all(rows.count(t) == 2 for t in rows)  # both pieces or neither


def test_error_masked_turns_stay_chunks_and_per_step_rewards_stay_aligned():
    traj = _trajectory("a", "g", 1.0, 3, masks=[1, 0, 1], turn_rewards=[0.1, 0.2, 0.3])
    (sample,), mb = _one_batch([traj], error_masking=True)
    assert sample.num_loss_tokens == 6 and sorted({c for c in sample.chunk_ids if c >= 0}) == [0, 1, 2]
    assert mb.chunk_rewards[0].tolist() == pytest.approx([0.1, 0.2, 1.3])
    x = mb.loss_inputs(mb.engine_logp)
    G = chunk_returns(x.rewards, x.chunk_ids, GAMMA, x.chunk_rewards)
    assert G[0].tolist() == pytest.approx([0.1 + GAMMA * (0.2 + GAMMA * 1.3), 0.2 + GAMMA * 1.3, 1.3])
    terminal = chunk_returns(x.rewards, x.chunk_ids, GAMMA)  # K = 3: the masked turn is still a step
    assert terminal[0].tolist() == pytest.approx([GAMMA ** 2, GAMMA, 1.0])


def test_truncation_is_counted_and_chosen_by_config():
    long = _trajectory("long", "g", 1.0, 4, reply_len=6)  # 3 + 4·(6+2) - 2 = 33 tokens
    short = _trajectory("short", "g", 0.0, 1)
    kept = build_samples([long, short], error_masking=False, max_seq_len=20, truncation="keep")
    assert kept.stats["truncated_frac"] == pytest.approx(0.5) and len(kept.samples) == 2
    cut = kept.samples[0]
    assert len(cut) == 20 and cut.truncated and cut.trajectory_chunks == 4
    G = chunk_returns(torch.tensor([1.0]), torch.tensor([cut.chunk_ids]), GAMMA,
                      trajectory_chunks=torch.tensor([cut.trajectory_chunks]))
    assert float(G[0, max(cut.chunk_ids)]) < 1.0  # the last surviving chunk is not credited with R
    dropped = build_samples([long, short], error_masking=False, max_seq_len=20, truncation="drop_sample")
    assert [s.trajectory for s in dropped.samples] == [1] and dropped.stats["truncated_frac"] == pytest.approx(0.5)
    zeroed = build_samples([long, short], error_masking=False, max_seq_len=20, truncation="zero_reward")
    assert zeroed.samples[0].reward == 0.0 and len(zeroed.samples[0]) == 20
    with pytest.raises(ValueError, match="truncation"):
        build_samples([long], error_masking=False, truncation="tail")
    assert TrainerConfig().truncation == "drop_sample"
    assert TrainerConfig(truncation="keep").truncation == "keep"


def test_hand_built_samples_still_get_chunks_from_turns():
    from roll.trainer.batch import Sample

    mb = collate([Sample([5, 6, 7, 8], [-1, 0, -1, 3], [0.0] * 4, [0, 1, 0, 0], 1.0)], [0], pad_id=0)
    assert mb.chunk_ids.tolist() == [[-1, 0, -1, 1]] and mb.trajectory_chunks.tolist() == [2]
