"""Advantages from sequence rewards and groups (sequences sampled for the same prompt/task share a group id)."""

from __future__ import annotations

import torch
from torch import Tensor

from ipa.trajectories import row_weights

BASELINES: tuple[str, ...] = ("none", "mean", "rloo")


def group_stats(
    rewards: Tensor, group_ids: Tensor | None = None, trajectory_ids: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per sequence: mean, unbiased std (0 for a group of one) and size of its group, each [B].

    Without `group_ids` the whole batch is one group. Group ids can be any integers. With `trajectory_ids`, rows of
    one trajectory (the pieces of a forked trajectory, which share its reward) count once: the size is the number
    of trajectories and mean/std are over trajectories.
    """
    r = rewards.float()
    if group_ids is None:
        group_ids = torch.zeros_like(r, dtype=torch.long)
    _, group = torch.unique(group_ids, return_inverse=True)
    num_groups = int(group.max().item()) + 1 if group.numel() else 0
    weight = row_weights(trajectory_ids, r.shape[0], r.device)
    size = torch.zeros(num_groups, device=r.device).index_add(0, group, weight).round()  # whole trajectories
    mean = torch.zeros(num_groups, device=r.device).index_add(0, group, weight * r) / size
    squares = torch.zeros(num_groups, device=r.device).index_add(0, group, weight * (r - mean[group]) ** 2)
    std = torch.sqrt(squares / (size - 1).clamp(min=1))
    return mean[group], std[group], size[group]


def group_advantages(
    rewards: Tensor,
    group_ids: Tensor | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    trajectory_ids: Tensor | None = None,
) -> Tensor:
    """GRPO: A_i = (R_i − mean_g R) / (std_g R + eps), or R_i − mean_g R without std normalization (Dr. GRPO). [B].
    Group statistics count trajectories when `trajectory_ids` is given (see group_stats)."""
    mean, std, _ = group_stats(rewards, group_ids, trajectory_ids)
    centered = rewards.float() - mean
    return centered / (std + eps) if norm_by_std else centered


def baseline_advantages(
    rewards: Tensor, group_ids: Tensor | None = None, baseline: str = "none", trajectory_ids: Tensor | None = None
) -> Tensor:
    """REINFORCE advantages, [B]: "none" A_i = R_i; "mean" A_i = R_i − mean_g R;
    "rloo" A_i = R_i − mean of the *other* rewards of the group (a group of one gets A_i = 0 under "mean"/"rloo")."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; expected one of {BASELINES}")
    r = rewards.float()
    if baseline == "none":
        return r
    mean, _, size = group_stats(r, group_ids, trajectory_ids)
    if baseline == "mean":
        return r - mean
    # R_i − (Σ_g R − R_i)/(n−1) = n/(n−1)·(R_i − mean_g R)
    return torch.where(size > 1, size / (size - 1).clamp(min=1) * (r - mean), 0.0)
