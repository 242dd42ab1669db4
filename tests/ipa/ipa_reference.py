"""Slow, obviously-correct references: plain Python loops over rows, tokens and chunks, in float64 Python floats.

Each loss reference returns (loss, grad) where grad[b][t] = ∂loss/∂logp[b][t] written by hand from the equations,
so the tests check autograd of the vectorized surrogates against it. Inputs are nested lists (tensor.tolist()).
"""

from __future__ import annotations

import math

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def chunk_index(mask, turn_ids=None):
    out = []
    for b, row in enumerate(mask):
        ids, k, prev, seen = [], -1, False, {}
        for t, is_assistant in enumerate(row):
            if turn_ids is None:
                if is_assistant and not prev:
                    k += 1
                ids.append(k if is_assistant else -1)
                prev = is_assistant
            else:
                turn = turn_ids[b][t]
                ids.append(turn if is_assistant and turn >= 0 else -1)
        if turn_ids is not None:  # dense rank of the turn ids present
            present = sorted({i for i in ids if i >= 0})
            seen = {turn: rank for rank, turn in enumerate(present)}
            ids = [seen[i] if i >= 0 else -1 for i in ids]
        out.append(ids)
    return out


def aggregation_weights(mask, mode, global_denominator=None, norm_length=None):
    """c[b][t] such that the aggregated loss is Σ c·ℓ (every mode is linear in ℓ)."""
    B, T = len(mask), len(mask[0]) if mask else 0
    n = [sum(1 for v in row if v) for row in mask]
    c = [[0.0] * T for _ in range(B)]
    if mode == "token-mean":
        denom = global_denominator if global_denominator is not None else max(sum(n), 1)
        for b in range(B):
            for t in range(T):
                if mask[b][t]:
                    c[b][t] = 1.0 / denom
        return c
    seqs = global_denominator if global_denominator is not None else max(sum(1 for v in n if v > 0), 1)
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            if mode == "seq-mean-token-sum":
                c[b][t] = 1.0 / seqs
            elif mode == "seq-mean-token-mean":
                c[b][t] = 1.0 / (n[b] * seqs)
            elif mode == "seq-mean-token-sum-norm":
                c[b][t] = 1.0 / ((norm_length if norm_length is not None else T) * seqs)
            else:
                raise ValueError(mode)
    return c


def _combine(per_token_loss, per_token_grad, weights):
    loss = sum(w * l for wr, lr in zip(weights, per_token_loss) for w, l in zip(wr, lr))
    grad = [[w * g for w, g in zip(wr, gr)] for wr, gr in zip(weights, per_token_grad)]
    return loss, grad


def chunk_returns(rewards, chunk_ids, gamma, chunk_rewards=None):
    """G[b][k] for k < K_b, both forms of Eq. 7 written literally."""
    out = []
    for b, row in enumerate(chunk_ids):
        K = max(row, default=-1) + 1
        if chunk_rewards is None:
            out.append([gamma ** (K - (k + 1)) * rewards[b] for k in range(K)])  # k+1 = 1-based chunk number
        else:
            G, nxt = [0.0] * K, 0.0
            for k in reversed(range(K)):
                nxt = chunk_rewards[b][k] + gamma * nxt
                G[k] = nxt
            out.append(G)
    return out


def _chunk_tokens(chunk_ids, trained, b, k):
    return [t for t in range(len(chunk_ids[b])) if trained[b][t] and chunk_ids[b][t] == k]


def chunk_log_ratio_means(a, b_, chunk_ids, trained):
    """mean over trained tokens of each chunk of a − b, as {(row, k): value} for non-empty chunks."""
    out = {}
    for b, row in enumerate(chunk_ids):
        for k in range(max(row, default=-1) + 1):
            toks = _chunk_tokens(chunk_ids, trained, b, k)
            if toks:
                out[(b, k)] = sum(a[b][t] - b_[b][t] for t in toks) / len(toks)
    return out


def _in_bounds(x, high, low):
    return (high is None or x <= high) and (low is None or x >= low)


def behaviour_weight(log_old_over_mu, cap):
    """β = min(π_old/μ, C) of the decoupled objective, written literally (1 when the correction is off)."""
    return 1.0 if cap is None else min(math.exp(log_old_over_mu), cap)


def ipa(
    logp,
    old,
    engine,
    mask,
    chunk_ids,
    rewards,
    gamma=0.95,
    high=5.0,
    low=None,
    chunk_rewards=None,
    agg="seq-mean-token-sum",
    global_denominator=None,
    norm_length=None,
    behaviour_cap=2.0,
):
    B, T = len(logp), len(logp[0])
    trained = [[bool(mask[b][t]) and chunk_ids[b][t] >= 0 for t in range(T)] for b in range(B)]
    G = chunk_returns(rewards, chunk_ids, gamma, chunk_rewards)
    rho = chunk_log_ratio_means(logp, old, chunk_ids, trained)
    mis = chunk_log_ratio_means(old, engine, chunk_ids, trained)
    loss_tok = [[0.0] * T for _ in range(B)]
    grad_tok = [[0.0] * T for _ in range(B)]
    masked_chunks = 0
    for (b, k), log_rho in rho.items():
        keep = _in_bounds(math.exp(mis[(b, k)]), high, low)
        masked_chunks += not keep
        w = 1.0 if rewards[b] > 0 else min(max(math.exp(log_rho), 0.0), 1.0)
        beta = behaviour_weight(mis[(b, k)], behaviour_cap)
        coef = beta * w * G[b][k] * (1.0 if keep else 0.0)
        for t in _chunk_tokens(chunk_ids, trained, b, k):
            loss_tok[b][t] = -coef * logp[b][t]
            grad_tok[b][t] = -coef
    loss, grad = _combine(loss_tok, grad_tok, aggregation_weights(trained, agg, global_denominator, norm_length))
    stats = {
        "chunk_mask_frac": masked_chunks / max(len(rho), 1),
        "num_chunks": len(rho),
        "ratio_max": max((math.exp(v) for v in rho.values()), default=0.0),
    }
    return loss, grad, stats


def group_stats(rewards, group_ids):
    groups = group_ids if group_ids is not None else [0] * len(rewards)
    mean, std, size = [], [], []
    for g in groups:
        members = [r for r, h in zip(rewards, groups) if h == g]
        m = sum(members) / len(members)
        var = sum((r - m) ** 2 for r in members) / (len(members) - 1) if len(members) > 1 else 0.0
        mean.append(m), std.append(math.sqrt(var)), size.append(len(members))
    return mean, std, size


def grpo_advantages(rewards, group_ids, norm_by_std=True, eps=1e-6):
    mean, std, _ = group_stats(rewards, group_ids)
    return [(r - m) / (s + eps) if norm_by_std else r - m for r, m, s in zip(rewards, mean, std)]


def ppo(
    logp,
    old,
    mask,
    adv,
    clip_eps=0.2,
    clip_eps_high=None,
    agg="token-mean",
    global_denominator=None,
    norm_length=None,
    keep=None,
    kl_coef=0.0,
    ref=None,
    entropy_coef=0.0,
    entropy=None,
    engine=None,
    behaviour_cap=2.0,
):
    """adv: per token [B][T]. keep: optional token mask (Eq. 6) of tokens that contribute. With `engine` (μ) each
    token's clipped term is weighted by β_t = min(π_old/μ, behaviour_cap)."""
    B, T = len(logp), len(logp[0])
    high = clip_eps if clip_eps_high is None else clip_eps_high
    loss_tok = [[0.0] * T for _ in range(B)]
    grad_tok = [[0.0] * T for _ in range(B)]
    for b in range(B):
        for t in range(T):
            if not mask[b][t]:
                continue
            if keep is None or keep[b][t]:
                r, a = math.exp(logp[b][t] - old[b][t]), adv[b][t]
                clipped = (a > 0 and r > 1 + high) or (a < 0 and r < 1 - clip_eps)
                beta = 1.0 if engine is None else behaviour_weight(old[b][t] - engine[b][t], behaviour_cap)
                loss_tok[b][t] = -beta * min(r * a, min(max(r, 1 - clip_eps), 1 + high) * a)
                grad_tok[b][t] = 0.0 if clipped else -beta * r * a
            if kl_coef:
                d = ref[b][t] - logp[b][t]
                loss_tok[b][t] += kl_coef * (math.exp(d) - d - 1)
                grad_tok[b][t] += kl_coef * (1 - math.exp(d))
            if entropy_coef:
                loss_tok[b][t] -= entropy_coef * entropy[b][t]
    return _combine(loss_tok, grad_tok, aggregation_weights(mask, agg, global_denominator, norm_length))


def gspo(
    logp,
    old,
    mask,
    rewards,
    group_ids,
    clip_eps=3e-4,
    clip_eps_high=4e-4,
    agg="seq-mean-token-mean",
    global_denominator=None,
    norm_length=None,
    engine=None,
    behaviour_cap=2.0,
):
    B, T = len(logp), len(logp[0])
    adv = grpo_advantages(rewards, group_ids)
    weights = aggregation_weights(mask, agg, global_denominator, norm_length)
    loss, grad = 0.0, [[0.0] * T for _ in range(B)]
    for b in range(B):
        toks = [t for t in range(T) if mask[b][t]]
        if not toks:
            continue
        s = math.exp(sum(logp[b][t] - old[b][t] for t in toks) / len(toks))
        a = adv[b]
        clipped = (a > 0 and s > 1 + clip_eps_high) or (a < 0 and s < 1 - clip_eps)
        beta = 1.0
        if engine is not None:
            beta = behaviour_weight(sum(old[b][t] - engine[b][t] for t in toks) / len(toks), behaviour_cap)
        seq_loss = -beta * min(s * a, min(max(s, 1 - clip_eps), 1 + clip_eps_high) * a)
        d_seq = 0.0 if clipped else -beta * a * s / len(toks)  # ∂ seq_loss / ∂ logp_t for each t of the row
        row_weight = sum(weights[b][t] for t in toks)  # every token carries seq_loss
        loss += row_weight * seq_loss
        for t in toks:
            grad[b][t] = row_weight * d_seq
    return loss, grad


def reinforce(
    logp,
    engine,
    mask,
    rewards,
    group_ids=None,
    is_cap=2.0,
    baseline="none",
    agg="seq-mean-token-sum",
    global_denominator=None,
    norm_length=None,
):
    B, T = len(logp), len(logp[0])
    mean, _, _ = group_stats(rewards, group_ids)
    loss_tok = [[0.0] * T for _ in range(B)]
    grad_tok = [[0.0] * T for _ in range(B)]
    for b in range(B):
        toks = [t for t in range(T) if mask[b][t]]
        if not toks:
            continue
        if baseline == "none":
            a = rewards[b]
        elif baseline == "mean":
            a = rewards[b] - mean[b]
        else:  # leave-one-out, written literally
            others = [
                r for i, r in enumerate(rewards) if i != b and (group_ids is None or group_ids[i] == group_ids[b])
            ]
            a = rewards[b] - sum(others) / len(others) if others else 0.0
        rho = math.exp(sum(logp[b][t] - engine[b][t] for t in toks) / len(toks))
        w = min(rho, is_cap) if is_cap is not None else rho
        for t in toks:
            loss_tok[b][t] = -w * a * logp[b][t]
            grad_tok[b][t] = -w * a
    return _combine(loss_tok, grad_tok, aggregation_weights(mask, agg, global_denominator, norm_length))


def sft(logp, mask, global_denominator=None):
    n = sum(1 for row in mask for v in row if v)
    denom = global_denominator if global_denominator is not None else max(n, 1)
    loss = -sum(l for lr, mr in zip(logp, mask) for l, m in zip(lr, mr) if m) / denom
    grad = [[-1.0 / denom if m else 0.0 for m in mr] for mr in mask]
    return loss, grad
