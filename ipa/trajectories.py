"""Rows that belong to one trajectory.

A trajectory whose context was rewritten mid-episode (a fork) is trained as several rows, one per token sequence.
Its statistics must still be the trajectory's: it counts once in a group's mean/std and in a seq-mean denominator,
and a per-sequence mean runs over all of its trained tokens. `trajectory_ids` [B] names the trajectory of each row
(any integers; rows of one trajectory must be in the same batch). `None` means every row is its own trajectory,
and then every function below reduces to the plain per-row quantity.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _dense(trajectory_ids: Tensor) -> tuple[Tensor, int]:
    _, index = torch.unique(trajectory_ids, return_inverse=True)
    return index, (int(index.max().item()) + 1 if index.numel() else 0)


def trajectory_sum(values: Tensor, trajectory_ids: Tensor | None) -> Tensor:
    """[B] per-row values -> [B]: each row gets the sum over the rows of its trajectory."""
    if trajectory_ids is None:
        return values
    index, n = _dense(trajectory_ids)
    return values.new_zeros(n).index_add(0, index, values)[index]


def row_shares(mask: Tensor, trajectory_ids: Tensor | None) -> Tensor:
    """[B] float: 1/(rows of its trajectory with a trained token) for a row with one, else 0. They sum to the
    number of trajectories with something to train on."""
    has_tokens = mask.bool().any(dim=1).float()
    return has_tokens / trajectory_sum(has_tokens, trajectory_ids).clamp(min=1)


def row_weights(trajectory_ids: Tensor | None, rows: int, device: torch.device) -> Tensor:
    """[B] float: 1/(rows of its trajectory), so that a trajectory weighs 1 in a per-row statistic."""
    ones = torch.ones(rows, device=device)
    return ones / trajectory_sum(ones, trajectory_ids)


def trajectory_token_counts(mask: Tensor, trajectory_ids: Tensor | None) -> Tensor:
    """[B] float: trained tokens of each row's whole trajectory."""
    return trajectory_sum(mask.bool().sum(dim=1).float(), trajectory_ids)


def trajectory_row_mean(values: Tensor, mask: Tensor, trajectory_ids: Tensor | None) -> Tensor:
    """[B, T] -> [B]: mean of `values` over the trained tokens of each row's trajectory (0 when it has none)."""
    mask = mask.bool()
    totals = trajectory_sum(torch.where(mask, values, torch.zeros_like(values)).sum(dim=1), trajectory_ids)
    return totals / trajectory_token_counts(mask, trajectory_ids).clamp(min=1).to(values.dtype)
