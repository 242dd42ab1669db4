import math

import ipa_reference as ref
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import (
    AGG_MODES,
    chunk_index,
    chunk_mismatch_mask,
    chunk_ratio,
    chunk_returns,
    discounted_returns,
    ipa_loss,
    terminal_chunk_rewards,
)
from ipa.chunks import chunks_per_row

GAMMAS = st.sampled_from((0.0, 0.5, 0.95, 1.0))


def _padded(rows, K):
    return [row + [0.0] * (K - len(row)) for row in rows]


@SETTINGS
@given(batches(), GAMMAS)
def test_chunk_returns_closed_form(batch, gamma):
    G = chunk_returns(batch.rewards, batch.chunk_ids, gamma)
    expected = ref.chunk_returns(batch.rewards.tolist(), batch.chunk_ids.tolist(), gamma)
    assert_close(G, _padded(expected, G.shape[1]))


@SETTINGS
@given(batches(), GAMMAS)
def test_chunk_returns_recursive_form(batch, gamma):
    G = chunk_returns(batch.rewards, batch.chunk_ids, gamma, chunk_rewards=batch.chunk_rewards)
    expected = ref.chunk_returns(batch.rewards.tolist(), batch.chunk_ids.tolist(), gamma, batch.chunk_rewards.tolist())
    assert_close(G, _padded(expected, G.shape[1]))
    # The closed form is the recursion with the whole reward on the last chunk.
    r = terminal_chunk_rewards(batch.rewards, batch.chunk_ids)
    assert_close(
        discounted_returns(r, chunks_per_row(batch.chunk_ids), gamma),
        chunk_returns(batch.rewards, batch.chunk_ids, gamma),
    )


def test_chunk_returns_long_trajectory_stays_finite():
    ids = torch.arange(300).unsqueeze(0)  # 300 one-token chunks
    G = chunk_returns(torch.tensor([1.0]), ids, gamma=0.5)
    assert torch.isfinite(G).all() and G[0, -1] == 1.0 and G[0, -2] == 0.5 and G[0, 0] == 0.0


@SETTINGS
@given(batches(), st.sampled_from((None, 0.5, 1.5, 5.0)), st.sampled_from((None, 0.2, 0.9)))
def test_chunk_ratio_and_mismatch_mask(batch, high, low):
    ids = batch.chunk_ids.masked_fill(~batch.mask, -1)
    logp, old, engine = (torch.where(batch.mask, x, 0.0) for x in (batch.logp, batch.old_logp, batch.engine_logp))
    ratio, keep = chunk_ratio(logp, old, ids), chunk_mismatch_mask(old, engine, ids, high, low)
    L = batch.lists()
    ref_ratio = ref.chunk_log_ratio_means(L["logp"], L["old_logp"], L["chunk_ids"], L["mask"])
    ref_mis = ref.chunk_log_ratio_means(L["old_logp"], L["engine_logp"], L["chunk_ids"], L["mask"])
    for (b, k), value in ref_ratio.items():
        assert_close(ratio[b, k], math.exp(value))
        m = math.exp(ref_mis[(b, k)])
        if all(bound is None or abs(m - bound) > 1e-4 for bound in (high, low)):  # skip float ties
            assert bool(keep[b, k]) == ((high is None or m <= high) and (low is None or m >= low))


def _ipa_case(batch, dtype=torch.float32, **params):
    logp = batch.logp.to(dtype).requires_grad_()
    out = ipa_loss(
        logp,
        batch.old_logp.to(dtype),
        batch.engine_logp.to(dtype),
        batch.mask,
        batch.chunk_ids,
        batch.rewards,
        **params,
    )
    out.loss.backward()
    # The reference sees the same (possibly bf16-rounded) numbers, in float64.
    L = {k: getattr(batch, k).to(dtype).double().tolist() for k in ("logp", "old_logp", "engine_logp")}
    ref_params = {
        "gamma": params.get("gamma", 0.95),
        "high": params.get("mismatch_high", 5.0),
        "low": params.get("mismatch_low"),
        "agg": params.get("agg", "seq-mean-token-sum"),
        "global_denominator": params.get("global_denominator"),
        "norm_length": params.get("norm_length"),
    }
    if params.get("chunk_rewards") is not None:
        ref_params["chunk_rewards"] = params["chunk_rewards"].tolist()
    expected_loss, expected_grad, stats = ref.ipa(
        L["logp"],
        L["old_logp"],
        L["engine_logp"],
        batch.mask.tolist(),
        batch.chunk_ids.tolist(),
        batch.rewards.tolist(),
        **ref_params,
    )
    return out, logp.grad, expected_loss, expected_grad, stats


def _no_ties(batch, high, low):
    L = batch.lists()
    mis = ref.chunk_log_ratio_means(L["old_logp"], L["engine_logp"], L["chunk_ids"], L["mask"])
    return all(b is None or abs(math.exp(v) - b) > 1e-4 for v in mis.values() for b in (high, low))


@SETTINGS
@given(
    batches(),
    st.sampled_from(AGG_MODES),
    GAMMAS,
    st.sampled_from((None, 1.5, 5.0)),
    st.sampled_from((None, 0.5)),
    st.booleans(),
    st.sampled_from((None, 7.0)),
)
def test_ipa_loss_value_and_gradient_match_reference(batch, agg, gamma, high, low, per_step, denominator):
    assume(_no_ties(batch, high, low))
    params = {
        "agg": agg,
        "gamma": gamma,
        "mismatch_high": high,
        "mismatch_low": low,
        "global_denominator": denominator,
        "norm_length": None if agg != "seq-mean-token-sum-norm" else 12.0,
        "chunk_rewards": batch.chunk_rewards if per_step else None,
    }
    out, grad, expected_loss, expected_grad, stats = _ipa_case(batch, **params)
    assert_close(out.loss, expected_loss)
    assert_close(grad, expected_grad)
    assert_close(out.metrics["chunk_mask_frac"], stats["chunk_mask_frac"])
    assert_close(out.metrics["ratio_max"], stats["ratio_max"])
    assert out.metrics["loss"] == pytest.approx(float(out.loss.detach()))


@SETTINGS
@given(batches(max_b=3, max_t=12), st.sampled_from(AGG_MODES))
def test_ipa_loss_bfloat16(batch, agg):
    assume(_no_ties(batch, 5.0, None))
    out, grad, expected_loss, expected_grad, _ = _ipa_case(batch, dtype=torch.bfloat16, agg=agg)
    assert out.loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    assert_close(out.loss, expected_loss, rtol=1e-3, atol=1e-4)
    assert_close(grad, expected_grad, rtol=1e-2, atol=1e-3)  # the gradient itself is stored in bf16


def test_ipa_loss_by_hand():
    """Three chunks, γ = 0.5: G = (0.25, 0.5, 1)·R. The failing row's chunk 1 (old/engine ratio e) is masked at H=2."""
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 1, 1], [0, 1, 1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    ids = chunk_index(mask)  # chunks {1,2}, {4}, {6,7}
    logp = torch.log(torch.full((2, 8), 0.5)).requires_grad_()
    old = logp.detach().clone()
    old[1, 1:3] += math.log(2.0)  # row 1, chunk 0: ρ = exp(mean(logp − old)) = 1/2
    engine = old.clone()
    engine[1, 4] -= 1.0  # row 1, chunk 1: π_old/μ = e > H
    rewards = torch.tensor([1.0, -1.0])
    out = ipa_loss(logp, old, engine, mask, ids, rewards, gamma=0.5, mismatch_high=2.0, agg="seq-mean-token-sum")
    out.loss.backward()
    coef = torch.zeros(2, 8)  # w·G·m per token, row 0: w = 1
    coef[0, [1, 2]], coef[0, 4], coef[0, [6, 7]] = 0.25, 0.5, 1.0
    coef[1, [1, 2]], coef[1, 4], coef[1, [6, 7]] = 0.5 * 0.25 * -1, 0.0, 1.0 * 1.0 * -1  # w = clip(ρ) ≤ 1
    torch.testing.assert_close(logp.grad, -coef / 2)  # 2 sequences
    torch.testing.assert_close(out.loss, (-coef * logp.detach()).sum() / 2)
    assert out.metrics["chunk_mask_frac"] == pytest.approx(1 / 6)
    assert out.metrics["token_mask_frac"] == pytest.approx(1 / 10)


def test_ipa_loss_all_masked_and_no_chunks():
    B, T = 2, 5
    logp = torch.full((B, T), float("nan")).requires_grad_()
    none = torch.zeros(B, T, dtype=torch.bool)
    out = ipa_loss(logp, logp.detach(), logp.detach(), none, chunk_index(none), torch.tensor([1.0, -1.0]))
    out.loss.backward()
    assert out.loss.item() == 0.0 and (logp.grad == 0).all()
    assert out.metrics["chunk_mask_frac"] == 0.0 and out.metrics["ratio_max"] == 0.0


def test_zero_reward_gives_zero_loss_and_gradient():
    mask = torch.tensor([[1, 1, 0, 1]], dtype=torch.bool)
    logp = torch.randn(1, 4).requires_grad_()
    out = ipa_loss(logp, logp.detach(), logp.detach(), mask, chunk_index(mask), torch.tensor([0.0]))
    out.loss.backward()
    assert out.loss.item() == 0.0 and (logp.grad == 0).all()


def test_positive_trajectory_ignores_ratio_negative_is_capped_at_one():
    mask = torch.ones(2, 3, dtype=torch.bool)
    logp = torch.zeros(2, 3, requires_grad=True)
    old = torch.full((2, 3), -1.0)  # ρ = e > 1 everywhere
    out = ipa_loss(logp, old, old, mask, chunk_index(mask), torch.tensor([1.0, -1.0]), agg="seq-mean-token-sum")
    out.loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5] * 3, [0.5] * 3]))  # |w| = 1 in both rows
    assert out.metrics["clip_frac"] == pytest.approx(0.5)


def test_chunk_rewards_must_cover_every_chunk():
    mask = torch.tensor([[1, 0, 1, 0, 1]], dtype=torch.bool)  # 3 chunks
    with pytest.raises(ValueError, match="chunk_rewards"):
        chunk_returns(torch.ones(1), chunk_index(mask), chunk_rewards=torch.ones(1, 2))
