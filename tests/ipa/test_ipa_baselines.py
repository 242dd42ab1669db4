import math

import ipa_reference as ref
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import (
    AGG_MODES,
    baseline_advantages,
    group_advantages,
    grpo_loss,
    gspo_loss,
    kl_k3,
    ppo_loss,
    reinforce_loss,
    token_mismatch_mask,
)

DTYPES = st.sampled_from((torch.float32, torch.bfloat16))


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-3}


def _lists(batch, dtype, *names):
    return [getattr(batch, n).to(dtype).double().tolist() for n in names]


def _far_from(values, bounds, margin=1e-3):
    return all(abs(v - b) > margin for v in values for b in bounds)


@SETTINGS
@given(batches())
def test_group_advantages(batch):
    r, g = batch.rewards.tolist(), batch.group_ids.tolist()
    assert_close(group_advantages(batch.rewards, batch.group_ids), ref.grpo_advantages(r, g), atol=1e-4)
    assert_close(group_advantages(batch.rewards, None, norm_by_std=False), ref.grpo_advantages(r, None, False))
    mean, _, _ = ref.group_stats(r, g)
    assert_close(baseline_advantages(batch.rewards, batch.group_ids, "mean"), [a - m for a, m in zip(r, mean)])
    for i, a in enumerate(baseline_advantages(batch.rewards, batch.group_ids, "rloo").tolist()):
        others = [x for j, (x, h) in enumerate(zip(r, g)) if j != i and h == g[i]]
        assert a == pytest.approx(r[i] - sum(others) / len(others) if others else 0.0, abs=1e-5)


@SETTINGS
@given(batches(), st.sampled_from(AGG_MODES), DTYPES, st.sampled_from((None, 0.28)), st.booleans(), st.booleans())
def test_grpo_matches_reference(batch, agg, dtype, clip_high, with_kl, with_mismatch):
    logp_l, old_l, eng_l, ref_l = _lists(batch, dtype, "logp", "old_logp", "engine_logp", "ref_logp")
    mask = batch.mask.tolist()
    ratios = [math.exp(a - b) for ra, rb, rm in zip(logp_l, old_l, mask) for a, b, m in zip(ra, rb, rm) if m]
    assume(_far_from(ratios, (0.8, 1.2, 1.28)))  # gradient is discontinuous at the clip boundaries
    mis = [math.exp(a - b) for ra, rb, rm in zip(old_l, eng_l, mask) for a, b, m in zip(ra, rb, rm) if m]
    assume(not with_mismatch or _far_from(mis, (0.5, 2.0)))

    params = {"agg": agg, "clip_eps": 0.2, "clip_eps_high": clip_high, "norm_length": 10.0}
    if with_kl:
        params.update(kl_coef=0.1, ref_logp=batch.ref_logp.to(dtype), entropy_coef=0.01, entropy=batch.entropy)
    if with_mismatch:
        params.update(engine_logp=batch.engine_logp.to(dtype), mismatch_high=2.0, mismatch_low=0.5)
    logp = batch.logp.to(dtype).requires_grad_()
    out = grpo_loss(logp, batch.old_logp.to(dtype), batch.mask, batch.rewards, batch.group_ids, **params)
    out.loss.backward()

    adv = ref.grpo_advantages(batch.rewards.tolist(), batch.group_ids.tolist())
    keep = [[0.5 <= math.exp(a - b) <= 2.0 for a, b in zip(ra, rb)] for ra, rb in zip(old_l, eng_l)]
    loss, grad = ref.ppo(
        logp_l,
        old_l,
        mask,
        [[a] * len(mask[0]) for a in adv],
        0.2,
        clip_high,
        agg,
        norm_length=10.0,
        keep=keep if with_mismatch else None,
        kl_coef=0.1 if with_kl else 0.0,
        ref=ref_l,
        entropy_coef=0.01 if with_kl else 0.0,
        entropy=batch.entropy.tolist(),
        engine=eng_l if with_mismatch else None,
    )
    assert_close(out.loss, loss, **_tol(dtype))
    assert_close(logp.grad, grad, **_tol(dtype))
    assert 0.0 <= out.metrics["clip_frac"] <= 1.0 and 0.0 <= out.metrics["token_mask_frac"] <= 1.0


@SETTINGS
@given(batches(), st.sampled_from(AGG_MODES), st.sampled_from((None, 3.0)))
def test_ppo_with_given_token_advantages(batch, agg, denominator):
    logp_l, old_l = _lists(batch, torch.float32, "logp", "old_logp")
    mask = batch.mask.tolist()
    ratios = [math.exp(a - b) for ra, rb, rm in zip(logp_l, old_l, mask) for a, b, m in zip(ra, rb, rm) if m]
    assume(_far_from(ratios, (0.8, 1.2)))
    adv = torch.where(batch.mask, torch.randn(batch.mask.shape), float("nan"))  # nan off the mask must not leak
    logp = batch.logp.clone().requires_grad_()
    out = ppo_loss(logp, batch.old_logp, batch.mask, adv, agg=agg, global_denominator=denominator)
    out.loss.backward()
    loss, grad = ref.ppo(logp_l, old_l, mask, adv.tolist(), agg=agg, global_denominator=denominator)
    assert_close(out.loss, loss)
    assert_close(logp.grad, grad)


@SETTINGS
@given(batches(), st.sampled_from(AGG_MODES), DTYPES)
def test_gspo_matches_reference(batch, agg, dtype):
    logp_l, old_l = _lists(batch, dtype, "logp", "old_logp")
    mask = batch.mask.tolist()
    s = [
        math.exp(sum(a - b for a, b, m in zip(ra, rb, rm) if m) / max(sum(rm), 1))
        for ra, rb, rm in zip(logp_l, old_l, mask)
    ]
    assume(_far_from(s, (1 - 3e-4, 1 + 4e-4), margin=1e-6))
    logp = batch.logp.to(dtype).requires_grad_()
    out = gspo_loss(
        logp, batch.old_logp.to(dtype), batch.mask, batch.rewards, batch.group_ids, agg=agg, norm_length=10.0
    )
    out.loss.backward()
    loss, grad = ref.gspo(
        logp_l, old_l, mask, batch.rewards.tolist(), batch.group_ids.tolist(), agg=agg, norm_length=10.0
    )
    assert_close(out.loss, loss, **_tol(dtype))
    assert_close(logp.grad, grad, **_tol(dtype))


@SETTINGS
@given(
    batches(),
    st.sampled_from(AGG_MODES),
    DTYPES,
    st.sampled_from((None, 1.0, 2.0)),
    st.sampled_from(("none", "mean", "rloo")),
)
def test_reinforce_matches_reference(batch, agg, dtype, cap, baseline):
    logp_l, eng_l = _lists(batch, dtype, "logp", "engine_logp")
    logp = batch.logp.to(dtype).requires_grad_()
    out = reinforce_loss(
        logp,
        batch.engine_logp.to(dtype),
        batch.mask,
        batch.rewards,
        batch.group_ids,
        is_cap=cap,
        baseline=baseline,
        agg=agg,
    )
    out.loss.backward()
    loss, grad = ref.reinforce(
        logp_l,
        eng_l,
        batch.mask.tolist(),
        batch.rewards.tolist(),
        batch.group_ids.tolist(),
        is_cap=cap,
        baseline=baseline,
        agg=agg,
    )
    assert_close(out.loss, loss, **_tol(dtype))
    assert_close(logp.grad, grad, **_tol(dtype))


def test_token_mismatch_mask_and_kl():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    engine = torch.tensor([[0.0, -2.0, 2.0]])  # ratios 1, e², e⁻²
    assert token_mismatch_mask(old, engine, high=5.0).tolist() == [[True, False, True]]
    assert token_mismatch_mask(old, engine, high=5.0, low=0.5).tolist() == [[True, False, False]]
    assert token_mismatch_mask(old, engine, high=None).all()
    logp, ref_logp = torch.tensor([0.0, -1.0]), torch.tensor([0.0, 0.0])
    assert kl_k3(logp, ref_logp).tolist() == pytest.approx([0.0, math.e - 2.0])


def test_ppo_clip_fraction_by_hand():
    mask = torch.ones(1, 4, dtype=torch.bool)
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 1.0]])).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])  # tokens 0 and 1 clipped, token 2 not (min picks r·A)
    out = ppo_loss(logp, old, mask, adv, clip_eps=0.2)
    out.loss.backward()
    assert out.metrics["clip_frac"] == pytest.approx(0.5)
    assert logp.grad.tolist()[0] == pytest.approx([0.0, 0.0, 1.5 / 4, -1.0 / 4])


def test_missing_inputs_raise():
    x = torch.zeros(1, 2)
    m = torch.ones(1, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="ref_logp"):
        ppo_loss(x, x, m, x, kl_coef=0.1)
    with pytest.raises(ValueError, match="engine_logp"):
        ppo_loss(x, x, m, x, mismatch_high=2.0)
    with pytest.raises(ValueError, match="baseline"):
        reinforce_loss(x, x, m, torch.zeros(1), baseline="bogus")
