"""The two records every loss shares: what goes in (`LossInputs`) and what comes out (`LossOutput`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor


@dataclass
class LossInputs:
    """One padded batch, every [B, T] tensor aligned so that position t scores token t (logp[b, t] is
    log π_θ(token_t | tokens_<t)): the caller shifts the model's logits by one before building this."""

    logp: Tensor  # [B,T] log π_θ of each token (requires grad)
    old_logp: Tensor  # [B,T] trainer log-probs of the proximal policy π_old (no grad)
    engine_logp: Tensor  # [B,T] behaviour policy μ: the inference engine's log-probs at sampling time (no grad)
    assistant_mask: Tensor  # [B,T] bool: tokens that are trained on
    chunk_ids: Tensor  # [B,T] long, from chunk_index
    rewards: Tensor  # [B] final reward per sequence
    group_ids: Tensor | None = None  # [B] long: sequences of the same prompt/task share an id (GRPO/GSPO/RLOO)
    chunk_rewards: Tensor | None = None  # [B,Kmax] optional per-step rewards r_k (Eq. 7 recursive form)
    ref_logp: Tensor | None = None  # [B,T] for KL k3
    entropy: Tensor | None = None  # [B,T] per-token entropy, for an entropy bonus
    advantages: Tensor | None = None  # [B,T] given advantages (PPO)
    # A trajectory split at a context fork is several rows: they share a trajectory id, their chunk ids are the
    # trajectory's global chunk indices and trajectory_chunks is its chunk count K (see trajectories.py, ipa_loss).
    trajectory_ids: Tensor | None = None  # [B] long
    trajectory_chunks: Tensor | None = None  # [B] long


Reduction = Literal["mean", "max", "min", "sum"]


@dataclass
class LossOutput:
    loss: Tensor  # scalar, to call .backward() on
    metrics: dict[str, float] = field(default_factory=dict)
    # how a metric combines over micro-batches and ranks; a metric not listed: loss-token-weighted mean
    reductions: dict[str, Reduction] = field(default_factory=dict)


def to_floats(metrics: dict[str, Tensor | float]) -> dict[str, float]:
    """Tensor-valued diagnostics to Python floats with a single device->host copy."""
    keys = [k for k, v in metrics.items() if isinstance(v, Tensor)]
    out = {k: float(v) for k, v in metrics.items() if not isinstance(v, Tensor)}
    if keys:
        values = torch.stack([metrics[k].detach().float().reshape(()) for k in keys]).tolist()
        out.update(zip(keys, values))
    return out


def masked_mean_max(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and max of `values` where `mask` holds (0 and 0 when nothing does), for diagnostics."""
    values = values.detach().float()
    n = mask.sum()
    mean = torch.where(mask, values, 0.0).sum() / n.clamp(min=1)
    peak = torch.where(mask, values, float("-inf")).amax() if values.numel() else values.new_zeros(())
    return mean, torch.where(n > 0, peak, 0.0)


def fraction(flags: Tensor, among: Tensor) -> Tensor:
    """Share of the positions in `among` where `flags` holds (0 when `among` is empty)."""
    return (flags & among).sum() / among.sum().clamp(min=1)
