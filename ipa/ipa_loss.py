"""IPA: chunk-level policy optimization (§3.2.4, Eq. 7-9).

A trajectory has interaction chunks c_1..c_K (see chunks.py) and a final reward R. Everything per chunk is a
segment reduction over the tokens of the chunk; the loss is then per token.

Defaults that are our choices (the paper fixes none): γ = 0.95, H = 5, no lower bound, aggregation
"seq-mean-token-sum" (the chunk-level policy gradient Σ_k G_k ∇log π_θ(c_k) of each trajectory, averaged over
trajectories; see docs/ipa.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ipa.aggregate import aggregate, check_agg
from ipa.behaviour import DEFAULT_BEHAVIOUR_CAP, behaviour_weight, truncated
from ipa.chunks import chunks_per_row
from ipa.regularizers import add_regularizers
from ipa.segment import broadcast_to_tokens, masked_row_mean, num_chunk_slots, segment_count, segment_mean
from ipa.types import LossOutput, fraction, masked_mean_max, to_floats

DEFAULT_GAMMA = 0.95
DEFAULT_MISMATCH_HIGH = 5.0
DEFAULT_AGG = "seq-mean-token-sum"
RATIO_LEVELS: tuple[str, ...] = ("token", "chunk", "sequence")


def _chunk_counts(chunk_ids: Tensor, trajectory_chunks: Tensor | None) -> Tensor:
    """K_b of every row: its trajectory's chunk count when given, else 1 + the row's largest chunk id."""
    if trajectory_chunks is None:
        return chunks_per_row(chunk_ids)
    return trajectory_chunks.to(device=chunk_ids.device, dtype=torch.long)


def num_slots(chunk_ids: Tensor, trajectory_chunks: Tensor | None = None) -> int:
    """Chunk slots a batch needs: every chunk id, and every trajectory's last chunk, must fit."""
    K = num_chunk_slots(chunk_ids)
    if trajectory_chunks is not None and trajectory_chunks.numel():
        K = max(K, int(trajectory_chunks.max().item()))
    return K


def terminal_chunk_rewards(
    rewards: Tensor, chunk_ids: Tensor, num_chunks: int | None = None, trajectory_chunks: Tensor | None = None
) -> Tensor:
    """r_k of a trajectory rewarded only at its end: r_K = R, every other r_k = 0. [B] -> [B, K].

    `trajectory_chunks` [B]: K of the trajectory each row belongs to, when a row is one piece of a trajectory split
    at a context fork (its chunk ids are then the trajectory's global chunk indices); R sits on the trajectory's
    last chunk, which need not be in the row."""
    K = num_slots(chunk_ids, trajectory_chunks) if num_chunks is None else num_chunks
    last = _chunk_counts(chunk_ids, trajectory_chunks) - 1  # -1 for a row without chunks
    r = torch.zeros(rewards.shape[0], K + 1, dtype=torch.float32, device=rewards.device)
    r = r.scatter(1, torch.where(last >= 0, last, K).unsqueeze(1), rewards.float().unsqueeze(1))
    return r[:, :K]


def discounted_returns(chunk_rewards: Tensor, chunks_in_row: Tensor, gamma: float) -> Tensor:
    """Eq. 7, recursive form: G_k = r_k + γ·G_{k+1}, G_{K+1} = 0, i.e. G_k = Σ_{j≥k} γ^{j-k} r_j.

    [B, K] rewards -> [B, K] returns; slots k ≥ K_b (`chunks_in_row`) are not part of the trajectory and get 0.
    Computed as one product with the upper-triangular matrix D[k, j] = γ^{j-k}, which is exact and, unlike
    a reversed cumsum scaled by γ^{-k}, cannot overflow for long trajectories.
    """
    K = chunk_rewards.shape[1]
    k = torch.arange(K, device=chunk_rewards.device)
    in_row = k.unsqueeze(0) < chunks_in_row.unsqueeze(1)
    r = torch.where(in_row, chunk_rewards.float(), 0.0)
    steps = k.unsqueeze(0) - k.unsqueeze(1)  # steps[k, j] = j - k
    discount = torch.where(steps >= 0, torch.pow(float(gamma), steps.clamp(min=0).float()), 0.0)
    return r @ discount.T


def chunk_returns(
    rewards: Tensor,
    chunk_ids: Tensor,
    gamma: float = DEFAULT_GAMMA,
    chunk_rewards: Tensor | None = None,
    num_chunks: int | None = None,
    trajectory_chunks: Tensor | None = None,
) -> Tensor:
    """Eq. 7: the return G_k of every chunk, [B, K]; all tokens of c_k share it.

    Without `chunk_rewards`: G_k = γ^(K-k)·R (k = 1..K, so the last chunk gets R itself).
    With `chunk_rewards` [B, Kmax] (per-step rewards r_k): G_k = r_k + γ·G_(k+1). They are taken as the whole
    reward of the trajectory: put the final reward into r_K yourself if it is not there already.
    K_b, the number of chunks of row b, is 1 + its largest chunk id, so chunk ids must be dense (chunk_index's are);
    or, for the pieces of a forked trajectory, `trajectory_chunks[b]` with chunk ids the trajectory's global indices
    (k counts from the trajectory's first chunk, not the piece's).
    """
    if chunk_rewards is not None:
        K = chunk_rewards.shape[1] if num_chunks is None else num_chunks
        if K < num_slots(chunk_ids, trajectory_chunks) or chunk_rewards.shape[1] < K:
            raise ValueError(f"chunk_rewards has {chunk_rewards.shape[1]} slots, fewer than the chunks in chunk_ids")
        r = chunk_rewards[:, :K]
    else:
        r = terminal_chunk_rewards(rewards, chunk_ids, num_chunks, trajectory_chunks)
    return discounted_returns(r, _chunk_counts(chunk_ids, trajectory_chunks), gamma)


def chunk_ratio(logp: Tensor, old_logp: Tensor, chunk_ids: Tensor, num_chunks: int | None = None) -> Tensor:
    """Eq. 8: ρ_c = exp(mean_{t∈c} [log π_θ(t) − log π_old(t)]), the per-token geometric mean of the chunk's
    likelihood ratio, [B, K] (1 for an empty slot). Differentiable in `logp`; detach it for a stop-gradient weight.
    Tokens with chunk id -1 are ignored (their values must be finite)."""
    K = num_chunk_slots(chunk_ids) if num_chunks is None else num_chunks
    return torch.exp(segment_mean(logp.float() - old_logp.float(), chunk_ids, K))


def ratio_at_level(logp: Tensor, old_logp: Tensor, trained: Tensor, chunk_ids: Tensor, num_chunks: int,
                   level: str = "chunk", counts: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The importance ratio π_θ/π_old at a granularity (the ablation of the paper's Fig. 9), detached.

    "token": ρ_t = exp(log π_θ(t) − log π_old(t)); "chunk": Eq. 8, ρ_c of the token's chunk; "sequence": one
    ρ per row, exp of the mean log-ratio over its trained tokens (GSPO's length-normalised sequence ratio).
    Returns (ρ of every token [B, T], 1 outside `trained`; ρ of every unit; the units that hold trained tokens),
    the units being tokens [B, T], chunks [B, K] or rows [B]. `chunk_ids` must be -1 outside `trained`; `counts`
    [B, K] are its tokens per chunk when the caller has them."""
    if level not in RATIO_LEVELS:
        raise ValueError(f"unknown ratio_level {level!r}; expected one of {RATIO_LEVELS}")
    log_ratio = torch.where(trained, logp.detach().float() - old_logp.float(), 0.0)
    if level == "token":
        per_token = torch.where(trained, torch.exp(log_ratio), 1.0)
        return per_token, per_token, trained
    if level == "chunk":
        counts = segment_count(chunk_ids, num_chunks) if counts is None else counts
        per_chunk = torch.exp(segment_mean(log_ratio, chunk_ids, num_chunks, counts))
        return broadcast_to_tokens(per_chunk, chunk_ids, fill=1.0), per_chunk, counts > 0
    per_row = torch.exp(masked_row_mean(log_ratio, trained))
    return torch.where(trained, per_row.unsqueeze(1), 1.0), per_row, trained.any(dim=1)


def within_bounds(ratio: Tensor, high: float | None, low: float | None = None) -> Tensor:
    """1[low ≤ ratio ≤ high] as a bool tensor; a bound of None is no bound."""
    keep = torch.ones_like(ratio, dtype=torch.bool)
    if high is not None:
        keep = keep & (ratio <= high)
    if low is not None:
        keep = keep & (ratio >= low)
    return keep


def chunk_mismatch_mask(
    old_logp: Tensor,
    engine_logp: Tensor,
    chunk_ids: Tensor,
    high: float | None = DEFAULT_MISMATCH_HIGH,
    low: float | None = None,
    num_chunks: int | None = None,
) -> Tensor:
    """m_c = 1[low ≤ exp(mean_{t∈c} [log π_old(t) − log μ(t)]) ≤ H], [B, K] bool (True = keep the chunk).

    π_old are the trainer's log-probs of the behaviour policy, μ the inference engine's of the same tokens: a chunk
    on which trainer and engine disagree too much is dropped whole."""
    return within_bounds(chunk_ratio(old_logp, engine_logp, chunk_ids, num_chunks), high, low)


def ipa_loss(
    logp: Tensor,
    old_logp: Tensor,
    engine_logp: Tensor,
    assistant_mask: Tensor,
    chunk_ids: Tensor,
    rewards: Tensor,
    *,
    gamma: float = DEFAULT_GAMMA,
    mismatch_high: float | None = DEFAULT_MISMATCH_HIGH,
    mismatch_low: float | None = None,
    chunk_rewards: Tensor | None = None,
    trajectory_chunks: Tensor | None = None,
    trajectory_ids: Tensor | None = None,
    behaviour_cap: float | None = DEFAULT_BEHAVIOUR_CAP,
    agg: str = DEFAULT_AGG,
    global_denominator: float | Tensor | None = None,
    norm_length: float | None = None,
    kl_coef: float = 0.0,
    ref_logp: Tensor | None = None,
    entropy_coef: float = 0.0,
    entropy: Tensor | None = None,
    ratio_level: str = "chunk",
) -> LossOutput:
    """Eq. 9 with the behaviour correction, per token t of chunk c:  ℓ_t = − β_c · w_c · G_c · m_c · log π_θ(t),
    then aggregated by `agg`.

    w_c = 1 when the trajectory's reward R > 0 and w_c = stopgrad(clip(ρ_c, 0, 1)) otherwise (TOPR-style: successes
    are imitated as they are, failures are pushed down only as much as the current policy still produces them).
    G_c is Eq. 7, ρ_c Eq. 8 (π_θ against the proximal π_old), m_c the chunk mismatch mask, and
    β_c = min(exp(mean_{t∈c} [log π_old(t) − log μ(t)]), C) with C = `behaviour_cap` the truncated chunk-level
    importance weight of the behaviour policy μ that sampled the chunk (behaviour.py; None: β_c = 1). The product
    β_c·w_c·G_c·m_c carries no gradient, so ∂ℓ_t/∂log π_θ(t) = −β_c·w_c·G_c·m_c (before aggregation).

    A trajectory split at a context fork arrives as several rows: give their chunk ids as the trajectory's global
    chunk indices, `trajectory_chunks` [B] its chunk count K and `trajectory_ids` [B] (rows of one trajectory share
    an id and must be in this batch), so that Eq. 7 runs over the whole trajectory and a seq-mean aggregation
    counts it once.

    Trained tokens are those with `assistant_mask` and a chunk id ≥ 0; ρ_c and m_c average over them only, while
    K and the discounting of Eq. 7 follow `chunk_ids` (a turn left out of training still counts as a step).
    Tokens of dropped chunks contribute 0 but stay in the aggregation's denominator.
    `ratio_level` "token" or "sequence" replaces ρ_c in w_c by the token's own ratio or the row's sequence ratio
    (`ratio_at_level`; the paper's Fig. 9 ablation); the ratio metrics are then over tokens or rows.
    Inputs may be float32 or bfloat16; the loss is computed in float32.
    """
    check_agg(agg)
    trained = assistant_mask.bool() & (chunk_ids >= 0)
    ids = chunk_ids.masked_fill(~trained, -1)
    K = chunk_rewards.shape[1] if chunk_rewards is not None else num_slots(chunk_ids, trajectory_chunks)
    # Padding may hold anything (even inf/nan): zero it before any arithmetic, through `where` so no grad leaks.
    logp32 = torch.where(trained, logp.float(), 0.0)
    old32 = torch.where(trained, old_logp.float(), 0.0)
    engine32 = torch.where(trained, engine_logp.float(), 0.0)

    counts = segment_count(ids, K)
    present = counts > 0  # chunks with at least one trained token
    returns = chunk_returns(rewards, chunk_ids, gamma, chunk_rewards, num_chunks=K,
                            trajectory_chunks=trajectory_chunks)  # Eq. 7
    ratio_tok, ratio, ratio_units = ratio_at_level(logp32, old32, trained, ids, K, ratio_level, counts)  # Eq. 8
    log_mismatch = segment_mean(old32 - engine32, ids, K, counts)
    mismatch = torch.exp(log_mismatch)
    keep = within_bounds(mismatch, mismatch_high, mismatch_low)  # m_c
    beta = behaviour_weight(log_mismatch, behaviour_cap)  # β_c

    positive = (rewards > 0).unsqueeze(1)
    weight = torch.where(positive, 1.0, ratio_tok.clamp(0.0, 1.0))  # w_c (per token), already stop-gradient
    coef = broadcast_to_tokens(beta * returns * keep, ids) * weight  # β_c · w_c · G_c · m_c
    loss_tok = -coef * logp32  # Eq. 9
    loss_tok, extra = add_regularizers(loss_tok, logp32, trained, kl_coef, ref_logp, entropy_coef, entropy)
    loss = aggregate(loss_tok, trained, agg, global_denominator, norm_length, trajectory_ids)

    ratio_mean, ratio_max = masked_mean_max(ratio, ratio_units)
    negative = ~positive if ratio.dim() == 2 else ~positive.squeeze(1)
    mismatch_mean, mismatch_max = masked_mean_max(mismatch, present)
    return_mean, _ = masked_mean_max(returns, present)
    metrics = {
        "loss": loss.detach(),
        "chunk_mask_frac": fraction(~keep, present),
        "token_mask_frac": (counts * ~keep).sum() / counts.sum().clamp(min=1),
        "ratio_mean": ratio_mean,
        "ratio_max": ratio_max,
        "clip_frac": fraction(negative & (ratio > 1.0), ratio_units),
        "mismatch_ratio_mean": mismatch_mean,
        "mismatch_ratio_max": mismatch_max,
        "return_mean": return_mean,
        "behaviour_weight_mean": masked_mean_max(beta, present)[0],
        "behaviour_trunc_frac": fraction(truncated(log_mismatch, behaviour_cap), present),
        "chunks_per_seq": present.sum() / max(rewards.shape[0], 1),
        "positive_frac": positive.float().mean() if rewards.numel() else 0.0,
        **extra,
    }
    return LossOutput(loss=loss, metrics=to_floats(metrics),
                      reductions={"ratio_max": "max", "mismatch_ratio_max": "max"})
