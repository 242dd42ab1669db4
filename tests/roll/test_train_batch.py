"""Batch building: trajectories -> samples -> padded micro-batches planned over ranks and mini-batches."""
from __future__ import annotations

import random

import pytest
import torch

from iflow.trajectory import Trajectory, Turn
from ipa import chunk_index
from roll.trainer.batch import Sample, collate, pack, plan, samples_from_trajectories, split_mini_batches


def _trajectory(tid: str, group: str, reward: float, masks: list[int], fork_at: int | None = None,
                turn_rewards: list[float | None] | None = None) -> Trajectory:
    """Turn k: prompt grows by an observation [100+k, 101+k], completion [10k+1, 10k+2, 10k+3]."""
    turns, prompt = [], [1, 2, 3]
    for k, mask in enumerate(masks):
        if fork_at is not None and k == fork_at:
            prompt = [1, 2, 3, 99]  # context rewritten: a new training sequence starts
        completion = [10 * k + 1, 10 * k + 2, 10 * k + 3]
        turns.append(Turn(index=k, prompt_ids=list(prompt), completion_ids=completion, logprobs=[-0.5] * 3,
                          train_mask=mask, fork=fork_at == k,
                          reward=None if turn_rewards is None else turn_rewards[k]))
        prompt = prompt + completion + [100 + k, 101 + k]
    return Trajectory(id=tid, task_id=group, group_id=group, turns=turns, reward=reward)


def test_samples_carry_turns_masks_rewards_and_groups() -> None:
    trajectories = [_trajectory("a", "g1", 1.0, [1, 0, 1]), _trajectory("b", "g1", 0.0, [1, 1]),
                    _trajectory("c", "g2", 0.5, [1, 1, 1], fork_at=2)]
    plain = samples_from_trajectories(trajectories, error_masking=False)
    assert [s.trajectory for s in plain] == [0, 1, 2, 2]  # the fork splits trajectory c in two sequences
    assert [s.group for s in plain] == [0, 0, 1, 1]
    assert [s.reward for s in plain] == [1.0, 0.0, 0.5, 0.5]
    first = plain[0]
    assert first.input_ids[:3] == [1, 2, 3] and first.turn_ids[:3] == [-1, -1, -1]
    assert [t for t in first.turn_ids if t >= 0] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert first.num_loss_tokens == 9  # every assistant token: RL trains failed tool calls too by default
    masked = samples_from_trajectories(trajectories, error_masking=True)
    assert masked[0].num_loss_tokens == 6  # turn 1 (train_mask=0) dropped: error masking, Eq. 1-2
    assert all(lp == -0.5 for lp, t in zip(first.engine_logprobs, first.turn_ids) if t >= 0)
    cut = samples_from_trajectories(trajectories, error_masking=False, max_seq_len=8)
    assert max(len(s) for s in cut) == 8


def test_chunk_rewards_follow_chunk_order() -> None:
    traj = _trajectory("a", "g", 1.0, [1, 1, 1], turn_rewards=[0.1, None, 0.3])
    (sample,) = samples_from_trajectories([traj], error_masking=False)
    assert sample.chunk_rewards == [0.1, 0.0, 1.3]  # the final reward R = 1 lands on r_K (Eq. 7)
    mb = collate([sample], [0], pad_id=0)
    chunks = chunk_index(mb.loss_mask, mb.turn_ids)
    assert int(chunks.max()) + 1 == mb.chunk_rewards.shape[1] == 3


def test_collate_pads_right_and_dummy_has_no_loss() -> None:
    samples = [Sample([5, 6, 7], [-1, 0, 0], [0.0, -1.0, -2.0], [0, 1, 1], 1.0, 0, 0),
               Sample([8, 9], [-1, 0], [0.0, -3.0], [0, 1], 0.0, 1, 1)]
    mb = collate(samples, [0, 1], pad_id=42)
    assert mb.input_ids.tolist() == [[5, 6, 7], [8, 9, 42]]
    assert mb.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert mb.turn_ids.tolist() == [[-1, 0, 0], [-1, 0, -1]]
    assert mb.engine_logp[1].tolist() == [0.0, -3.0, 0.0]
    assert mb.num_loss_tokens == 3 and mb.num_sequences == 2
    dummy = collate(samples, [1], pad_id=42, dummy=True)
    assert dummy.num_loss_tokens == 0 and dummy.sample_index.tolist() == [-1]


def test_pack_respects_token_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 60) for _ in range(40)]
    bins = pack([[i] for i in range(40)], lengths, max_tokens=128)
    assert sorted(i for b in bins for unit in b for i in unit) == list(range(40))
    for b in bins:
        rows = [i for unit in b for i in unit]
        assert len(rows) * max(lengths[i] for i in rows) <= 128
    assert pack([[0]], [500], max_tokens=128) == [[[0]]]  # over budget: a bin of its own


@pytest.mark.parametrize("world_size,mini_batches,keep_groups", [(1, 1, False), (2, 1, False), (2, 2, True),
                                                                  (3, 1, True)])
def test_plan_gives_every_rank_the_same_count_and_covers_each_sample_once(world_size: int, mini_batches: int,
                                                                          keep_groups: bool) -> None:
    rng = random.Random(world_size)
    samples = []
    for i in range(13):
        n = rng.randint(4, 30)
        samples.append(Sample(list(range(n)), [-1] + [0] * (n - 1), [0.0] * n, [0] + [1] * (n - 1), float(i % 2),
                              i // 4, i))
    result = plan(samples, pad_id=0, max_tokens=64, world_size=world_size, mini_batches=mini_batches,
                  keep_groups=keep_groups)
    assert len(result) == mini_batches
    seen = []
    for mini in result:
        assert len(mini) == world_size and len({len(rank) for rank in mini}) == 1
        for rank in mini:
            for mb in rank:
                seen += mb.sample_index[mb.sample_index >= 0].tolist()
    assert sorted(seen) == list(range(13))
    if keep_groups:  # a group never spans two micro-batches
        for mini in result:
            where = {}
            for r, rank in enumerate(mini):
                for k, mb in enumerate(rank):
                    for i in mb.sample_index[mb.sample_index >= 0].tolist():
                        where.setdefault(samples[i].group, set()).add((r, k))
            assert all(len(places) == 1 for places in where.values())


def test_mini_batches_keep_groups_together() -> None:
    samples = [Sample([1, 2], [-1, 0], [0.0, 0.0], [0, 1], 0.0, g, i) for i, g in enumerate([0, 0, 1, 1, 2, 2])]
    pieces = split_mini_batches(samples, 3)
    assert [sorted({samples[i].group for i in p}) for p in pieces] == [[0], [1], [2]]
    with pytest.raises(ValueError):
        split_mini_batches(samples, 7)


def test_microbatch_moves_between_devices() -> None:
    mb = collate([Sample([1, 2], [-1, 0], [0.0, -1.0], [0, 1])], [0], pad_id=0)
    moved = mb.to("cpu")
    assert torch.equal(moved.input_ids, mb.input_ids) and moved.chunk_rewards is None
