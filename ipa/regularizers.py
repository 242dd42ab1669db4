"""Per-token terms any policy loss may add: a KL penalty to a reference policy and an entropy bonus."""

from __future__ import annotations

import torch
from torch import Tensor

# exp() of a larger log-ratio overflows float32; the clamp only bites where the policies already disagree wildly.
_MAX_LOG_RATIO = 20.0


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(π_θ || π_ref), per token: exp(r) - r - 1 with r = log π_ref - log π_θ (≥ 0)."""
    log_ratio = (ref_logp - logp).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return torch.exp(log_ratio) - log_ratio - 1.0


def add_regularizers(
    loss_tok: Tensor,
    logp: Tensor,
    mask: Tensor,
    kl_coef: float = 0.0,
    ref_logp: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """loss_tok + kl_coef·k3 − entropy_coef·H per token, and their token means over `mask` as diagnostics.

    Both terms are added before aggregation, so they are aggregated the same way as the policy term.
    """
    metrics: dict[str, Tensor] = {}
    n = mask.sum().clamp(min=1)
    if kl_coef:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp")
        kl = kl_k3(logp, torch.where(mask, ref_logp.float(), logp.detach()))
        loss_tok = loss_tok + kl_coef * kl
        metrics["kl"] = torch.where(mask, kl.detach(), 0.0).sum() / n
    if entropy_coef:
        if entropy is None:
            raise ValueError("entropy_coef > 0 needs entropy")
        ent = torch.where(mask, entropy.float(), 0.0)
        loss_tok = loss_tok - entropy_coef * ent
        metrics["entropy"] = ent.detach().sum() / n
    return loss_tok, metrics
