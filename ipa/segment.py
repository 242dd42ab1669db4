"""Segment reductions over the chunks of a padded batch.

A batch is a pair of tensors shaped [B, T]: per-token values and `chunk_ids`, the chunk of each token (0..K-1 within
its row, -1 for tokens that belong to no chunk: prompt, observations, padding). Per-chunk results are shaped [B, K],
where K is a number of chunk slots shared by all rows; slots a row does not use hold the reduction of nothing (0).

Everything is one scatter or one gather: no Python loop over tokens or chunks.
"""

from __future__ import annotations

import torch
from torch import Tensor


def num_chunk_slots(chunk_ids: Tensor) -> int:
    """K such that every chunk id fits in [0, K): 1 + the largest id, 0 when there is no chunk (one host sync)."""
    if chunk_ids.numel() == 0:
        return 0
    return int(chunk_ids.max().item()) + 1


def _scatter_index(chunk_ids: Tensor, num_chunks: int) -> Tensor:
    # Tokens outside every chunk go to an extra slot K that callers drop, so no boolean indexing (static shapes).
    return torch.where(chunk_ids >= 0, chunk_ids, num_chunks).long()


def segment_sum(values: Tensor, chunk_ids: Tensor, num_chunks: int) -> Tensor:
    """[B, T] values -> [B, K] sums over the tokens of each chunk. Differentiable in `values`.

    Values outside every chunk are ignored, but they still take part in the arithmetic of the dropped slot:
    pass finite values there (the losses zero them first).
    """
    B = values.shape[0]
    index = _scatter_index(chunk_ids, num_chunks)
    out = values.new_zeros(B, num_chunks + 1)
    return out.scatter_add(1, index, values)[:, :num_chunks]


def segment_count(chunk_ids: Tensor, num_chunks: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """[B, K] number of tokens in each chunk."""
    ones = torch.ones(chunk_ids.shape, dtype=dtype, device=chunk_ids.device)
    return segment_sum(ones, chunk_ids, num_chunks)


def segment_mean(values: Tensor, chunk_ids: Tensor, num_chunks: int, counts: Tensor | None = None) -> Tensor:
    """[B, T] -> [B, K] mean over the tokens of each chunk; 0 for an empty slot."""
    if counts is None:
        counts = segment_count(chunk_ids, num_chunks, dtype=values.dtype)
    return segment_sum(values, chunk_ids, num_chunks) / counts.clamp(min=1)


def broadcast_to_tokens(per_chunk: Tensor, chunk_ids: Tensor, fill: float = 0.0) -> Tensor:
    """[B, K] per-chunk values -> [B, T]: each token gets its chunk's value, tokens outside chunks get `fill`."""
    if per_chunk.shape[1] == 0:  # no chunk anywhere: gather would have nothing to index
        return torch.full(chunk_ids.shape, fill, dtype=per_chunk.dtype, device=per_chunk.device)
    gathered = per_chunk.gather(1, chunk_ids.clamp(min=0).long())
    return torch.where(chunk_ids >= 0, gathered, torch.as_tensor(fill, dtype=per_chunk.dtype, device=per_chunk.device))


def masked_row_mean(values: Tensor, mask: Tensor) -> Tensor:
    """[B, T] -> [B] mean of `values` over the tokens where `mask` holds; 0 for a row with none."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)
    return total / mask.sum(dim=1).clamp(min=1).to(values.dtype)
