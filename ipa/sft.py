"""Imitation: SFT with error masking (Eq. 1-2) and the hybrid IL + RL objective (Eq. 10)."""

from __future__ import annotations

from torch import Tensor

from ipa.ipa_loss import ipa_loss
from ipa.types import LossOutput, to_floats


def sft_loss(logp: Tensor, loss_mask: Tensor, global_denominator: float | Tensor | None = None) -> LossOutput:
    """Eq. 1-2: token-mean negative log-likelihood over the tokens whose mask is 1,

        L_SFT = − Σ_t m_t · log π_θ(t) / Σ_t m_t,

    where m_t = 1 on assistant turns that are kept: turns whose tool call failed, or that were marked irrelevant,
    have m_t = 0 (build the mask per turn with `chunks.chunk_mask_to_tokens`). `global_denominator` replaces Σ m_t
    by the token count of the global batch (data-parallel ranks and micro-batches)."""
    mask = loss_mask.bool()
    logp32 = logp.float().masked_fill(~mask, 0.0)
    count = mask.sum()
    denominator = global_denominator if global_denominator is not None else count.clamp(min=1)
    loss = -logp32.sum() / denominator
    nll = -logp32.detach().sum() / count.clamp(min=1)
    return LossOutput(loss=loss, metrics=to_floats({"loss": loss.detach(), "nll": nll, "num_tokens": count}),
                      reductions={"num_tokens": "sum"})


def add_imitation(
    rl: LossOutput,
    logp: Tensor,
    expert_mask: Tensor,
    *,
    lambda_il: float = 1.0,
    lambda_rl: float = 1.0,
    il_global_denominator: float | Tensor | None = None,
) -> LossOutput:
    """Eq. 10 around any policy-gradient loss `rl` (computed without the expert tokens):
    L = λ_IL · L_IL + λ_RL · L_RL, with L_IL the token-mean NLL (Eq. 1-2) of the tokens in `expert_mask` [B, T].
    The metrics are rl's, plus `il_loss`, `rl_loss` and `il_num_tokens`."""
    il = sft_loss(logp, expert_mask.bool(), il_global_denominator)
    loss = lambda_il * il.loss + lambda_rl * rl.loss
    metrics = {**rl.metrics, "loss": float(loss.detach()), "il_loss": il.metrics["loss"],
               "rl_loss": rl.metrics["loss"], "il_num_tokens": il.metrics["num_tokens"]}
    return LossOutput(loss=loss, metrics=metrics, reductions={**rl.reductions, "il_num_tokens": "sum"})


def hybrid_loss(
    logp: Tensor,
    old_logp: Tensor,
    engine_logp: Tensor,
    assistant_mask: Tensor,
    chunk_ids: Tensor,
    rewards: Tensor,
    expert_mask: Tensor,
    *,
    lambda_il: float = 1.0,
    lambda_rl: float = 1.0,
    il_global_denominator: float | Tensor | None = None,
    **ipa_params,
) -> LossOutput:
    """Eq. 10 with IPA: L = λ_IL · L_IL + λ_RL · L_IPA for trajectories resampled from a replayed expert prefix.

    `expert_mask` [B, T] marks the tokens of replayed expert chunks (e.g. `resampling.expert_prefix_mask`); they get
    the imitation loss (token-mean NLL, Eq. 1-2). The remaining assistant tokens, sampled by the policy, get Eq. 9.
    The returns of Eq. 7 still count every chunk of the trajectory, expert ones included. `ipa_params` go to
    `ipa_loss` (gamma, mismatch_high, agg, global_denominator, ...)."""
    trained = assistant_mask.bool()
    expert = expert_mask.bool() & trained
    rl = ipa_loss(logp, old_logp, engine_logp, trained & ~expert, chunk_ids, rewards, **ipa_params)
    return add_imitation(rl, logp, expert, lambda_il=lambda_il, lambda_rl=lambda_rl,
                         il_global_denominator=il_global_denominator)
