"""The losses IPA is compared with: PPO-clip, token-level GRPO, GSPO and REINFORCE with sequence-level truncated IS.

Same conventions as ipa_loss: [B, T] tensors aligned so position t scores token t, trained tokens given by
`assistant_mask`, padding may hold anything, the loss is computed in float32, and each function returns a
LossOutput with diagnostics (ratio_mean, ratio_max, clip_frac, token_mask_frac, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ipa.advantages import baseline_advantages, group_advantages
from ipa.aggregate import aggregate, check_agg
from ipa.behaviour import DEFAULT_BEHAVIOUR_CAP, behaviour_weight, truncated
from ipa.ipa_loss import within_bounds
from ipa.regularizers import add_regularizers
from ipa.trajectories import trajectory_row_mean
from ipa.types import LossOutput, fraction, masked_mean_max, to_floats

_MAX_LOG_RATIO = 20.0  # exp() stays finite in float32


def token_mismatch_mask(old_logp: Tensor, engine_logp: Tensor, high: float | None, low: float | None = None) -> Tensor:
    """Eq. 6, token level: m_t = 1[low ≤ π_old(t)/μ(t) ≤ high], [B, T] bool (True = keep the token)."""
    return within_bounds(torch.exp(old_logp.float() - engine_logp.float()), high, low)


def _clean(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, x.float(), 0.0)


def _mismatch_keep(old32: Tensor, engine_logp: Tensor | None, mask: Tensor, high, low) -> Tensor:
    if high is None and low is None:
        return mask
    if engine_logp is None:
        raise ValueError("a mismatch bound needs engine_logp")
    return mask & token_mismatch_mask(old32, _clean(engine_logp, mask), high, low)


def ppo_loss(
    logp: Tensor,
    old_logp: Tensor,
    assistant_mask: Tensor,
    advantages: Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    engine_logp: Tensor | None = None,
    mismatch_high: float | None = None,
    mismatch_low: float | None = None,
    behaviour_cap: float | None = DEFAULT_BEHAVIOUR_CAP,
    trajectory_ids: Tensor | None = None,
    agg: str = "token-mean",
    global_denominator: float | Tensor | None = None,
    norm_length: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy: Tensor | None = None,
) -> LossOutput:
    """Decoupled PPO-clip with given advantages ([B, T], or [B] for one per sequence), per token:

        r_t = π_θ(t)/π_old(t),   β_t = min(π_old(t)/μ(t), C),   ℓ_t = −β_t·min(r_t·A_t, clip(r_t, 1−ε_low, 1+ε_high)·A_t)

    ε_low = clip_eps, ε_high = clip_eps_high (default clip_eps; DAPO's "clip-higher" when larger). β_t corrects for
    the behaviour policy μ (`engine_logp`) that sampled the token (behaviour.py); C = `behaviour_cap`, None or no
    `engine_logp` gives β_t = 1. With a mismatch bound, tokens failing Eq. 6 contribute 0 (and stay in the
    denominator)."""
    check_agg(agg)
    mask = assistant_mask.bool()
    logp32, old32 = _clean(logp, mask), _clean(old_logp, mask)
    adv = advantages.float()
    adv = adv.unsqueeze(1).expand_as(logp32) if adv.dim() == 1 else torch.where(mask, adv, 0.0)
    high = clip_eps if clip_eps_high is None else clip_eps_high

    ratio = torch.exp((logp32 - old32).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + high) * adv)
    keep = _mismatch_keep(old32, engine_logp, mask, mismatch_high, mismatch_low)
    log_beta = old32 - _clean(engine_logp, mask) if engine_logp is not None else torch.zeros_like(old32)
    beta = behaviour_weight(log_beta, behaviour_cap)
    loss_tok = torch.where(keep, -beta * surrogate, 0.0)
    loss_tok, extra = add_regularizers(loss_tok, logp32, mask, kl_coef, ref_logp, entropy_coef, entropy)
    loss = aggregate(loss_tok, mask, agg, global_denominator, norm_length, trajectory_ids)

    r = ratio.detach()
    clipped = ((adv > 0) & (r > 1.0 + high)) | ((adv < 0) & (r < 1.0 - clip_eps))
    ratio_mean, ratio_max = masked_mean_max(r, mask)
    metrics = {
        "loss": loss.detach(),
        "ratio_mean": ratio_mean,
        "ratio_max": ratio_max,
        "clip_frac": fraction(clipped, mask),
        "token_mask_frac": fraction(~keep, mask),
        "adv_mean": masked_mean_max(adv, mask)[0],
        "behaviour_weight_mean": masked_mean_max(beta, mask)[0],
        "behaviour_trunc_frac": fraction(truncated(log_beta, behaviour_cap), mask),
        **extra,
    }
    return LossOutput(loss=loss, metrics=to_floats(metrics), reductions={"ratio_max": "max"})


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    assistant_mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor | None = None,
    *,
    norm_adv_by_std: bool = True,
    agg: str = "seq-mean-token-mean",
    trajectory_ids: Tensor | None = None,
    **ppo_params,
) -> LossOutput:
    """Token-level GRPO: PPO-clip (above) where every token of sequence i has the group-normalized advantage
    A_i = (R_i − mean_g R)/(std_g R + eps). Default aggregation is GRPO's 1/G Σ_i 1/|o_i| Σ_t (seq-mean-token-mean);
    KL (k3, `kl_coef`) and entropy terms are optional; with `engine_logp` the behaviour correction β_t of ppo_loss.
    With `trajectory_ids` the group statistics and the seq-mean count trajectories, not rows."""
    advantages = group_advantages(rewards, group_ids, norm_by_std=norm_adv_by_std, trajectory_ids=trajectory_ids)
    return ppo_loss(logp, old_logp, assistant_mask, advantages, agg=agg, trajectory_ids=trajectory_ids,
                    **ppo_params)


def gspo_loss(
    logp: Tensor,
    old_logp: Tensor,
    assistant_mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor | None = None,
    *,
    clip_eps: float = 3e-4,
    clip_eps_high: float | None = 4e-4,
    norm_adv_by_std: bool = True,
    engine_logp: Tensor | None = None,
    behaviour_cap: float | None = DEFAULT_BEHAVIOUR_CAP,
    trajectory_ids: Tensor | None = None,
    agg: str = "seq-mean-token-mean",
    global_denominator: float | Tensor | None = None,
    norm_length: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy: Tensor | None = None,
) -> LossOutput:
    """GSPO: one ratio per sequence, the geometric mean s_i = exp(mean_t [log π_θ(t) − log π_old(t)]), clipped:

        ℓ_i = −β_i·min(s_i·A_i, clip(s_i, 1−ε_low, 1+ε_high)·A_i),   given to every token of sequence i,

    with β_i = min(exp(mean_t [log π_old(t) − log μ(t)]), C) the sequence-level behaviour weight (behaviour.py;
    1 without `engine_logp` or with `behaviour_cap=None`). With `trajectory_ids` a sequence is a whole trajectory:
    its means run over all of its rows and its group statistics count it once.

    With the default seq-mean-token-mean this is exactly GSPO's 1/G Σ_i ℓ_i. Defaults ε = (3e-4, 4e-4) are the
    GSPO paper's (sequence ratios stay much closer to 1 than token ratios)."""
    check_agg(agg)
    mask = assistant_mask.bool()
    logp32, old32 = _clean(logp, mask), _clean(old_logp, mask)
    adv = group_advantages(rewards, group_ids, norm_by_std=norm_adv_by_std, trajectory_ids=trajectory_ids)
    high = clip_eps if clip_eps_high is None else clip_eps_high

    log_s = trajectory_row_mean(logp32 - old32, mask, trajectory_ids).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    s = torch.exp(log_s)
    if engine_logp is not None:
        log_beta = trajectory_row_mean(old32 - _clean(engine_logp, mask), mask, trajectory_ids)
    else:
        log_beta = torch.zeros_like(log_s)
    beta = behaviour_weight(log_beta, behaviour_cap)
    seq_loss = -beta * torch.minimum(s * adv, s.clamp(1.0 - clip_eps, 1.0 + high) * adv)
    loss_tok = seq_loss.unsqueeze(1).expand_as(logp32)
    loss_tok, extra = add_regularizers(loss_tok, logp32, mask, kl_coef, ref_logp, entropy_coef, entropy)
    loss = aggregate(loss_tok, mask, agg, global_denominator, norm_length, trajectory_ids)

    rows = mask.any(dim=1)
    s_d = s.detach()
    clipped = ((adv > 0) & (s_d > 1.0 + high)) | ((adv < 0) & (s_d < 1.0 - clip_eps))
    ratio_mean, ratio_max = masked_mean_max(s_d, rows)
    metrics = {
        "loss": loss.detach(),
        "ratio_mean": ratio_mean,
        "ratio_max": ratio_max,
        "clip_frac": fraction(clipped, rows),
        "token_mask_frac": 0.0,  # GSPO masks nothing
        "adv_mean": masked_mean_max(adv, rows)[0],
        "behaviour_weight_mean": masked_mean_max(beta, rows)[0],
        "behaviour_trunc_frac": fraction(truncated(log_beta, behaviour_cap), rows),
        **extra,
    }
    return LossOutput(loss=loss, metrics=to_floats(metrics), reductions={"ratio_max": "max"})


def reinforce_loss(
    logp: Tensor,
    engine_logp: Tensor,
    assistant_mask: Tensor,
    rewards: Tensor,
    group_ids: Tensor | None = None,
    *,
    is_cap: float | None = 2.0,
    baseline: str = "none",
    old_logp: Tensor | None = None,
    mismatch_high: float | None = None,
    mismatch_low: float | None = None,
    trajectory_ids: Tensor | None = None,
    agg: str = "seq-mean-token-sum",
    global_denominator: float | Tensor | None = None,
    norm_length: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy: Tensor | None = None,
) -> LossOutput:
    """REINFORCE on engine samples with the sequence-level geometric truncated IS of Eq. 4-5:

        Eq. 4   ∇J = E_{τ∼μ}[ π_θ(τ)/μ(τ) · A(τ) · ∇log π_θ(τ) ]
        Eq. 5   the product ratio is replaced by its per-token geometric mean, truncated at C = `is_cap`:
                ρ̄_i = min(exp(mean_t [log π_θ(t) − log μ(t)]), C)
        loss    ℓ_t = − stopgrad(ρ̄_i) · A_i · log π_θ(t)

    A_i = R_i, optionally minus a group `baseline` ("mean" or "rloo"). Default aggregation seq-mean-token-sum is the
    plain Monte-Carlo estimate of Eq. 4 (Σ_t ∇log π_θ(t) = ∇log π_θ(τ)). With mismatch bounds, tokens failing Eq. 6
    (which needs `old_logp`) contribute 0. It corrects for the behaviour policy μ already (the ratio is against μ,
    not π_old), so it takes no behaviour weight. With `trajectory_ids` ρ̄_i, the baseline and the seq-mean run over
    whole trajectories (see trajectories.py)."""
    check_agg(agg)
    mask = assistant_mask.bool()
    logp32, engine32 = _clean(logp, mask), _clean(engine_logp, mask)
    adv = baseline_advantages(rewards, group_ids, baseline, trajectory_ids)

    log_rho = trajectory_row_mean(logp32.detach() - engine32, mask, trajectory_ids)
    log_rho = log_rho.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    rho = torch.exp(log_rho)
    weight = rho.clamp(max=is_cap) if is_cap is not None else rho
    if mismatch_high is None and mismatch_low is None:
        keep = mask
    elif old_logp is None:
        raise ValueError("a mismatch bound needs old_logp")
    else:
        keep = mask & token_mismatch_mask(_clean(old_logp, mask), engine32, mismatch_high, mismatch_low)
    loss_tok = torch.where(keep, -(weight * adv).unsqueeze(1) * logp32, 0.0)
    loss_tok, extra = add_regularizers(loss_tok, logp32, mask, kl_coef, ref_logp, entropy_coef, entropy)
    loss = aggregate(loss_tok, mask, agg, global_denominator, norm_length, trajectory_ids)

    rows = mask.any(dim=1)
    ratio_mean, ratio_max = masked_mean_max(rho, rows)
    clipped = rho > is_cap if is_cap is not None else torch.zeros_like(rows)
    metrics = {
        "loss": loss.detach(),
        "ratio_mean": ratio_mean,
        "ratio_max": ratio_max,
        "clip_frac": fraction(clipped, rows),
        "token_mask_frac": fraction(~keep, mask),
        "adv_mean": masked_mean_max(adv, rows)[0],
        **extra,
    }
    return LossOutput(loss=loss, metrics=to_floats(metrics), reductions={"ratio_max": "max"})
