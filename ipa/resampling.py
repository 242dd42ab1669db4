"""Chunk-level initialized resampling (§3.2.4.4), as pure logic.

An expert trajectory has chunks c_1..c_K. Resampling from anchor a (0 ≤ a < K) replays the expert's first a chunks
c_1..c_a as a fixed prefix and lets the policy generate from c_{a+1} on; a = 0 is an ordinary rollout. The success
rate p(a) measured from each anchor tells where the policy goes wrong: where p jumps from low to high as the prefix
grows lies the crucial fork, the decision the policy misses. Training resamples from just before it.

Anchors are chosen either all at once (parallelized initialization: uniform or random positions) or one after the
other from the end (sequential rollback: a = K−1, K−1−step, ... until the policy stops succeeding).
"""

from __future__ import annotations

import torch
from torch import Tensor

ANCHOR_MODES: tuple[str, ...] = ("uniform", "random")


def parallel_anchors(
    num_chunks: int, num_anchors: int, mode: str = "uniform", generator: torch.Generator | None = None
) -> Tensor:
    """Anchors for parallelized initialization, sorted and distinct, at most min(num_anchors, num_chunks) of them.

    "uniform": a_i = floor(i·K/n), i = 0..n−1 (the trajectory cut into n equal parts, one anchor at the start of
    each; every position once n ≥ K). "random": n distinct positions drawn uniformly from 0..K−1."""
    if mode not in ANCHOR_MODES:
        raise ValueError(f"unknown anchor mode {mode!r}; expected one of {ANCHOR_MODES}")
    if num_chunks <= 0 or num_anchors <= 0:
        return torch.zeros(0, dtype=torch.long)
    n = min(num_anchors, num_chunks)
    if mode == "uniform":
        return torch.unique(torch.arange(n) * num_chunks // n)
    return torch.randperm(num_chunks, generator=generator)[:n].sort().values


def rollback_anchors(num_chunks: int, step: int = 1, max_anchors: int | None = None) -> Tensor:
    """Anchors for sequential rollback, in the order to try them: K−1, K−1−step, ..., down to 0 at most."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    anchors = torch.arange(num_chunks - 1, -1, -step, dtype=torch.long)
    return anchors if max_anchors is None else anchors[:max_anchors]


def success_rates(outcomes: Tensor, anchor_index: Tensor, num_anchors: int) -> Tensor:
    """Mean outcome of the rollouts started from each anchor, [num_anchors] (nan where none was run).

    `outcomes` [N] (bool or 0/1 or a reward in [0, 1]) and `anchor_index` [N] (which anchor rollout n started from)."""
    index = anchor_index.long()
    values = outcomes.float()
    total = values.new_zeros(num_anchors).index_add(0, index, values)
    count = values.new_zeros(num_anchors).index_add(0, index, torch.ones_like(values))
    return total / count  # 0/0 = nan marks an anchor without rollouts


def crucial_fork(anchors: Tensor, rates: Tensor, threshold: float | None = None) -> int:
    """The anchor to resample from, just before the crucial fork; -1 when there is none.

    Anchors are sorted ascending (with their success rates p). With `threshold` (sequential rollback): scan from
    the longest prefix back and return the first anchor whose p < threshold (the policy still succeeds from every
    later anchor); -1 if it succeeds from all. Without (parallel anchors): return a_i with the largest rise
    p(a_{i+1}) − p(a_i) > 0, the latest one on ties; -1 if p never rises. Either way the fork lies among the
    chunks c_{a_i+1}..c_{a_{i+1}}. Anchors with a nan rate (no rollouts) are ignored.
    """
    order = torch.argsort(anchors)
    anchors, rates = anchors[order], rates[order].float()
    measured = ~torch.isnan(rates)
    anchors, rates = anchors[measured], rates[measured]
    if anchors.numel() == 0:
        return -1
    if threshold is not None:
        failing = torch.nonzero(rates < threshold).flatten()
        return int(anchors[failing[-1]]) if failing.numel() else -1
    if anchors.numel() < 2:
        return -1
    rise = rates[1:] - rates[:-1]
    best = rise.max()
    if best <= 0:
        return -1
    latest = torch.nonzero(rise == best).flatten()[-1]
    return int(anchors[latest])


def expert_prefix_mask(chunk_ids: Tensor, anchors: Tensor) -> Tensor:
    """[B, T] bool: the tokens of the replayed expert chunks, c_1..c_{a_b} of row b (chunk ids 0..a_b−1).

    `anchors` [B]: the anchor of each row (0 = no prefix). This is the `expert_mask` of `sft.hybrid_loss`."""
    return (chunk_ids >= 0) & (chunk_ids < anchors.to(chunk_ids.device).unsqueeze(1))
