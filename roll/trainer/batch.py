"""Trajectories -> training samples -> padded micro-batches, planned over data-parallel ranks and mini-batches.

A *sample* is one token sequence of a trajectory (`iflow.trajectory.training_sequences`: a trajectory whose context
was rewritten mid-episode gives several). Its assistant tokens carry their turn index and their chunk id: the
index of their turn among the trajectory's turns (global over the pieces of a forked trajectory, and counting the
turns that error masking leaves out of the loss), so that Eq. 7 discounts over the whole trajectory, only its last
chunk gets R, and every group statistic counts the trajectory once (`ipa.trajectories`). Prompt and observation
tokens carry -1. The pieces of one trajectory always share a micro-batch.

Micro-batches are packed by padded token count (rows x longest row <= budget). Every rank must run the same number
of forward/backward passes per optimizer step (ZeRO reduces gradients collectively), so the plan splits or pads
micro-batches until each rank of each mini-batch has the same count; a padding micro-batch has an all-zero loss mask.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from iflow.trajectory import Trajectory, training_sequences
from ipa import LossInputs, baseline_advantages, chunk_index
from roll.rewards import training_reward

# What happens to a training sequence longer than trainer.max_seq_len (its tail is cut in every mode but the first):
#   drop_sample  not trained on at all (the cut piece's chunks would be credited with an outcome they did not reach)
#   keep         its head is trained; returns still discount over the whole trajectory's chunks
#   zero_reward  its head is trained with the trajectory's reward (and per-step rewards) set to 0
TRUNCATION_MODES = ("drop_sample", "keep", "zero_reward")


@dataclass
class Sample:
    input_ids: list[int]
    turn_ids: list[int]
    engine_logprobs: list[float]
    loss_mask: list[int]
    reward: float = 0.0
    group: int = 0
    trajectory: int = 0
    chunk_rewards: list[float] | None = None  # r_k of the trajectory's chunks, indexed by chunk id
    chunk_ids: list[int] | None = None  # the trajectory's chunk index of each token (None: from turn_ids)
    trajectory_chunks: int | None = None  # K of the whole trajectory (None: the chunks in this sample)
    truncated: bool = False
    prefix_mask: list[int] | None = None  # 1 on the tokens of replayed expert turns (Eq. 10's imitation term)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_loss_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass
class SampleSet:
    samples: list[Sample]
    stats: dict[str, float]  # truncated_frac: share of the training sequences cut at max_seq_len


def _trajectory_chunk_rewards(trajectory: Trajectory, chunk_of_turn: dict[int, int],
                              final_reward: float) -> list[float] | None:
    """Per-chunk rewards r_k when any turn has one; the trajectory's final reward R is added to r_K (Eq. 7)."""
    turns = [turn for turn in trajectory.turns if turn.index in chunk_of_turn]
    if not any(turn.reward is not None for turn in turns):
        return None
    rewards = [0.0] * len(chunk_of_turn)
    for turn in turns:
        rewards[chunk_of_turn[turn.index]] += float(turn.reward or 0.0)
    rewards[-1] += final_reward
    return rewards


def _group_key(trajectory: Trajectory) -> str:
    return trajectory.group_id if trajectory.group_id is not None else trajectory.task_id or trajectory.id


def build_samples(
    trajectories: Sequence[Trajectory], *, error_masking: bool, max_seq_len: int | None = None,
    truncation: str = "keep", failure_reward: float | None = None, reward_baseline: str = "none",
) -> SampleSet:
    """One sample per training sequence, and how many were cut. `error_masking` drops turns with train_mask=0 from
    the loss, and replayed turns (a resampling prefix) are never in it (both stay chunks: K and the discounting
    count them). `truncation` is one of TRUNCATION_MODES.

    Group ids are dense ints in order of first appearance of `group_id` (falling back to `task_id`); trajectory
    rewards of None count as 0; a failed trajectory is trained with `failure_reward` (roll.rewards.training_reward),
    then `reward_baseline` (ipa.BASELINES) centres each trajectory's reward on its group's (whole trajectories,
    over all of `trajectories`, so a group split across micro-batches keeps its baseline).
    Per-turn rewards become `chunk_rewards` (by chunk id) when any turn has one."""
    if truncation not in TRUNCATION_MODES:
        raise ValueError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
    groups: dict[str, int] = {}
    group_of = [groups.setdefault(_group_key(t), len(groups)) for t in trajectories]
    rewards = baseline_advantages(torch.tensor([training_reward(t, failure_reward) for t in trajectories]),
                                  torch.tensor(group_of, dtype=torch.long), reward_baseline).tolist()
    samples: list[Sample] = []
    sequences = cut = 0
    for t_index, (trajectory, group, reward) in enumerate(zip(trajectories, group_of, rewards)):
        chunk_of_turn = {turn.index: k for k, turn in enumerate(t for t in trajectory.turns if t.completion_ids)}
        chunk_rewards = _trajectory_chunk_rewards(trajectory, chunk_of_turn, reward)
        replayed = {turn.index for turn in trajectory.turns if turn.replayed}  # an expert prefix: not the policy's
        pieces = []
        for seq in training_sequences(trajectory):
            mask = [int((m or not error_masking) and t >= 0 and t not in replayed)
                    for m, t in zip(seq.train_mask, seq.turn_ids)]
            prefix = [int(t >= 0 and t in replayed) for t in seq.turn_ids]
            ids, turn_ids, logps = seq.input_ids, seq.turn_ids, seq.engine_logprobs
            sequences += 1
            truncated = max_seq_len is not None and len(ids) > max_seq_len
            if truncated:
                cut += 1
                ids, turn_ids, logps, mask, prefix = (x[:max_seq_len] for x in (ids, turn_ids, logps, mask, prefix))
            chunk_ids = [chunk_of_turn[t] if t >= 0 else -1 for t in turn_ids]
            pieces.append(Sample(list(ids), list(turn_ids), list(logps), mask, reward, group, t_index,
                                 chunk_rewards, chunk_ids, len(chunk_of_turn), truncated,
                                 list(prefix) if any(prefix) else None))
        if truncation == "drop_sample":
            pieces = [p for p in pieces if not p.truncated]
        elif truncation == "zero_reward" and any(p.truncated for p in pieces):
            pieces = [replace(p, reward=0.0, chunk_rewards=None if p.chunk_rewards is None else
                              [0.0] * len(p.chunk_rewards)) for p in pieces]
        samples.extend(pieces)
    return SampleSet(samples, {"truncated_frac": cut / sequences if sequences else 0.0})


def samples_from_trajectories(
    trajectories: Sequence[Trajectory], *, error_masking: bool, max_seq_len: int | None = None,
    truncation: str = "keep",
) -> list[Sample]:
    """The samples of `build_samples`, without its statistics."""
    return build_samples(trajectories, error_masking=error_masking, max_seq_len=max_seq_len,
                         truncation=truncation).samples


@dataclass
class MicroBatch:
    """A padded micro-batch (right padding). `sample_index` maps rows back to the step's samples (-1: padding)."""

    input_ids: Tensor  # [B,T] long
    attention_mask: Tensor  # [B,T] long
    loss_mask: Tensor  # [B,T] bool
    turn_ids: Tensor  # [B,T] long, -1 outside turns
    engine_logp: Tensor  # [B,T] float32
    rewards: Tensor  # [B] float32
    group_ids: Tensor  # [B] long
    sample_index: Tensor  # [B] long
    chunk_ids: Tensor  # [B,T] long: the trajectory's chunk index of each assistant token, -1 elsewhere
    trajectory_ids: Tensor  # [B] long: rows of one (forked) trajectory share it
    trajectory_chunks: Tensor  # [B] long: K of each row's whole trajectory
    chunk_rewards: Tensor | None = None  # [B,K] float32
    old_logp: Tensor | None = None  # [B,T] filled by the old-log-prob pass
    ref_logp: Tensor | None = None  # [B,T] filled by the reference model
    advantages: Tensor | None = None  # [B] given advantages (ppo), computed over the whole batch
    temperature: float = 1.0  # the sampling temperature: π is scored as softmax(logits / temperature), as sampled
    prefix_mask: Tensor | None = None  # [B,T] bool: tokens of replayed expert turns (None: the rows have none)
    extras: dict = field(default_factory=dict)

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())

    @property
    def num_sequences(self) -> int:
        return int(self.loss_mask.any(dim=1).sum())

    def loss_inputs(self, logp: Tensor, entropy: Tensor | None = None) -> LossInputs:
        """What `ipa.compute_loss` needs, with π_θ's log-probs `logp`. Without recomputed old log-probs the engine's
        stand in for π_old (then μ = π_old and the behaviour weight is 1)."""
        return LossInputs(
            logp=logp, old_logp=self.old_logp if self.old_logp is not None else self.engine_logp,
            engine_logp=self.engine_logp, assistant_mask=self.loss_mask, chunk_ids=self.chunk_ids,
            rewards=self.rewards, group_ids=self.group_ids, chunk_rewards=self.chunk_rewards, ref_logp=self.ref_logp,
            entropy=entropy, advantages=self.advantages, trajectory_ids=self.trajectory_ids,
            trajectory_chunks=self.trajectory_chunks)

    def to(self, device: torch.device | str) -> MicroBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device) for k, v in moved.items() if isinstance(v, Tensor)})


def collate(samples: Sequence[Sample], indices: Sequence[int], pad_id: int, dummy: bool = False) -> MicroBatch:
    """Pad `samples[indices]` to the longest row. `dummy=True` zeroes the loss mask (a padding micro-batch)."""
    if not indices:
        raise ValueError("a micro-batch needs at least one sample")
    rows = [samples[i] for i in indices]
    B, T = len(rows), max(len(r) for r in rows)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    loss_mask = torch.zeros((B, T), dtype=torch.bool)
    turn_ids = torch.full((B, T), -1, dtype=torch.long)
    chunk_ids = torch.full((B, T), -1, dtype=torch.long)
    engine_logp = torch.zeros((B, T), dtype=torch.float32)
    for b, row in enumerate(rows):
        n = len(row)
        input_ids[b, :n] = torch.tensor(row.input_ids, dtype=torch.long)
        attention[b, :n] = 1
        loss_mask[b, :n] = torch.tensor(row.loss_mask, dtype=torch.bool)
        turn_ids[b, :n] = torch.tensor(row.turn_ids, dtype=torch.long)
        engine_logp[b, :n] = torch.tensor(row.engine_logprobs, dtype=torch.float32)
        if row.chunk_ids is not None:
            chunk_ids[b, :n] = torch.tensor(row.chunk_ids, dtype=torch.long)
        else:  # a hand-built sample: its turns are its chunks
            chunk_ids[b, :n] = chunk_index(turn_ids[b: b + 1, :n] >= 0, turn_ids[b: b + 1, :n])[0]
    counts = [r.trajectory_chunks if r.trajectory_chunks is not None else int(chunk_ids[b].max()) + 1
              for b, r in enumerate(rows)]
    prefix_mask = None
    if any(r.prefix_mask is not None for r in rows) and not dummy:
        prefix_mask = torch.zeros((B, T), dtype=torch.bool)
        for b, row in enumerate(rows):
            if row.prefix_mask is not None:
                prefix_mask[b, : len(row)] = torch.tensor(row.prefix_mask, dtype=torch.bool)
    if dummy:
        loss_mask.zero_()
    chunk_rewards = None
    if any(r.chunk_rewards is not None for r in rows):
        K = max(max(len(r.chunk_rewards or []) for r in rows), max(counts))
        chunk_rewards = torch.zeros((B, K), dtype=torch.float32)
        for b, row in enumerate(rows):
            if row.chunk_rewards is not None:
                chunk_rewards[b, : len(row.chunk_rewards)] = torch.tensor(row.chunk_rewards)
            elif counts[b] > 0:  # rewarded only at its end, beside rows with per-step rewards
                chunk_rewards[b, counts[b] - 1] = row.reward
    return MicroBatch(
        input_ids=input_ids, attention_mask=attention, loss_mask=loss_mask, turn_ids=turn_ids,
        engine_logp=engine_logp, rewards=torch.tensor([r.reward for r in rows], dtype=torch.float32),
        group_ids=torch.tensor([r.group for r in rows], dtype=torch.long),
        sample_index=torch.tensor([-1 if dummy else i for i in indices], dtype=torch.long),
        chunk_ids=chunk_ids, trajectory_ids=torch.tensor([r.trajectory for r in rows], dtype=torch.long),
        trajectory_chunks=torch.tensor(counts, dtype=torch.long), chunk_rewards=chunk_rewards,
        prefix_mask=prefix_mask,
    )


def pack(units: Sequence[Sequence[int]], lengths: Sequence[int], max_tokens: int) -> list[list[list[int]]]:
    """First-fit decreasing over *units* (lists of sample indices that must share a micro-batch, e.g. a GRPO group):
    bins whose padded size (rows x longest row) stays within `max_tokens`; a unit over the budget gets its own bin."""
    def width(unit: Sequence[int]) -> int:
        return max(lengths[i] for i in unit)

    order = sorted(range(len(units)), key=lambda u: (-width(units[u]), u))
    bins: list[list[list[int]]] = []
    shape: list[tuple[int, int]] = []  # (rows, width) of each bin
    for u in order:
        unit, w = list(units[u]), width(units[u])
        for b, (rows, bw) in enumerate(shape):
            if (rows + len(unit)) * max(bw, w) <= max_tokens:
                bins[b].append(unit)
                shape[b] = (rows + len(unit), max(bw, w))
                break
        else:
            bins.append([unit])
            shape.append((len(unit), w))
    return bins


def _cost(bin_: list[list[int]], lengths: Sequence[int]) -> int:
    rows = [i for unit in bin_ for i in unit]
    return len(rows) * max(lengths[i] for i in rows)


def _split_largest(bins: list[list[list[int]]], lengths: Sequence[int]) -> bool:
    """Halve the splittable bin (more than one unit) with the largest padded cost; False when none is."""
    candidates = [b for b in range(len(bins)) if len(bins[b]) > 1]
    if not candidates:
        return False
    members = bins.pop(max(candidates, key=lambda k: _cost(bins[k], lengths)))
    half = len(members) // 2
    bins.extend([members[:half], members[half:]])
    return True


def assign_to_ranks(bins: list[list[list[int]]], lengths: Sequence[int], world_size: int
                    ) -> list[list[list[int] | None]]:
    """Distribute bins over ranks with equal counts, balancing padded tokens; None marks a padding micro-batch."""
    bins = [list(b) for b in bins]
    while len(bins) % world_size and _split_largest(bins, lengths):
        pass
    per_rank = -(-len(bins) // world_size)
    cost = [0] * world_size
    ranks: list[list[list[int] | None]] = [[] for _ in range(world_size)]
    for members in sorted(bins, key=lambda m: -_cost(m, lengths)):
        r = min((k for k in range(world_size) if len(ranks[k]) < per_rank), key=lambda k: (cost[k], k))
        ranks[r].append([i for unit in members for i in unit])
        cost[r] += _cost(members, lengths)
    for r in range(world_size):
        ranks[r].extend([None] * (per_rank - len(ranks[r])))
    return ranks


def group_units(samples: Sequence[Sample], indices: Sequence[int], keep_groups: bool) -> list[list[int]]:
    """Indices that must share a micro-batch: a whole group with `keep_groups`, else a whole trajectory (the
    pieces of a forked trajectory are normalised together inside the loss)."""
    units: dict[int, list[int]] = {}
    for i in indices:
        units.setdefault(samples[i].group if keep_groups else samples[i].trajectory, []).append(i)
    return list(units.values())


def split_mini_batches(samples: Sequence[Sample], mini_batches: int) -> list[list[int]]:
    """Sample indices in `mini_batches` pieces of near-equal size; samples of one group stay together when the
    number of groups allows it, those of one trajectory always."""
    units = group_units(samples, range(len(samples)), True)
    if len(units) < mini_batches:
        units = group_units(samples, range(len(samples)), False)
    if len(units) < mini_batches:
        raise ValueError(f"{len(units)} trajectories cannot fill {mini_batches} mini-batches")
    pieces: list[list[int]] = [[] for _ in range(mini_batches)]
    for k, unit in enumerate(units):
        pieces[k * mini_batches // len(units)].extend(unit)
    return pieces


def plan(
    samples: Sequence[Sample], *, pad_id: int, max_tokens: int, world_size: int, mini_batches: int = 1,
    keep_groups: bool = False,
) -> list[list[list[MicroBatch]]]:
    """plan[m][r] is the list of micro-batches rank r runs for mini-batch m (same length on every rank).

    `keep_groups` puts all samples of a group in one micro-batch: needed by losses whose advantages are computed
    from the group inside the loss (grpo, gspo, reinforce with a baseline)."""
    if not samples:
        raise ValueError("nothing to train on: the batch has no samples")
    lengths = [len(s) for s in samples]
    result = []
    for piece in split_mini_batches(samples, mini_batches):
        bins = pack(group_units(samples, piece, keep_groups), lengths, max_tokens)
        shortest = min(piece, key=lambda i: lengths[i])
        per_rank = assign_to_ranks(bins, lengths, world_size)
        result.append([[collate(samples, b, pad_id) if b is not None else collate(samples, [shortest], pad_id, True)
                        for b in rank_bins] for rank_bins in per_rank])
    return result


def flatten(plan_: Iterable[Iterable[Iterable[MicroBatch]]]) -> list[MicroBatch]:
    return [mb for mini in plan_ for rank in mini for mb in rank]
