"""The behaviour-policy correction of the decoupled objective (AReaL's "decoupled PPO").

Three policies are kept apart: the behaviour policy μ that sampled the tokens (the inference engine's log-probs,
recorded with the policy version that produced them), the proximal policy π_old (the trainer's recomputed log-probs,
the anchor of the trust region) and the current π_θ. With asynchronous rollout μ is up to `staleness` versions older
than π_old, so the losses clip π_θ against π_old and weight each term by the truncated importance weight

    β = min(π_old / μ, C)

(per token for PPO/GRPO, geometric mean per chunk for IPA, per sequence for GSPO). β carries no gradient. With
μ = π_old (synchronous, or old log-probs taken from the engine) β = 1 and the losses are the plain ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_BEHAVIOUR_CAP = 2.0


def behaviour_weight(log_ratio: Tensor, cap: float | None) -> Tensor:
    """β = min(exp(log_ratio), cap) for log_ratio = log π_old − log μ (of a token, or a mean over a chunk or
    sequence). `cap=None` turns the correction off (β = 1)."""
    if cap is None:
        return torch.ones_like(log_ratio, dtype=torch.float32)
    if cap <= 0:
        raise ValueError(f"behaviour_cap must be > 0, got {cap}")
    return torch.exp(log_ratio.float().clamp(max=math.log(cap)))


def truncated(log_ratio: Tensor, cap: float | None) -> Tensor:
    """Where β was truncated (π_old/μ > cap), for the `behaviour_trunc_frac` diagnostic."""
    if cap is None:
        return torch.zeros_like(log_ratio, dtype=torch.bool)
    return log_ratio > math.log(cap)
