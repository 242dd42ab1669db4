"""The decoupled objective: behaviour μ (engine), proximal π_old (recomputed) and current π_θ all different, as
with stale samples. Checked against the loop references and by hand."""

import math

import ipa_reference as ref
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import LossInputs, chunk_index, compute_loss, grpo_loss, gspo_loss, ipa_loss

CAPS = st.sampled_from((None, 1.0, 2.0, 10.0))


def _three_policies(batch):
    """π_θ, π_old, μ pairwise different on every trained token (μ: a stale policy, far from π_old)."""
    g = torch.Generator().manual_seed(0)
    old = torch.where(batch.mask, batch.logp + 0.2 + 0.1 * torch.rand(batch.mask.shape, generator=g), batch.old_logp)
    mu = torch.where(batch.mask, old + torch.randn(batch.mask.shape, generator=g), batch.engine_logp)
    return batch.logp, old, mu


@SETTINGS
@given(batches(), CAPS, st.sampled_from(("seq-mean-token-sum", "token-mean")))
def test_ipa_weights_each_chunk_by_truncated_proximal_over_behaviour(batch, cap, agg):
    logp, old, mu = _three_policies(batch)
    theta = logp.clone().requires_grad_()
    out = ipa_loss(theta, old, mu, batch.mask, batch.chunk_ids, batch.rewards, mismatch_high=None,
                   behaviour_cap=cap, agg=agg)
    out.loss.backward()
    loss, grad, _ = ref.ipa(logp.double().tolist(), old.double().tolist(), mu.double().tolist(), batch.mask.tolist(),
                            batch.chunk_ids.tolist(), batch.rewards.tolist(), high=None, behaviour_cap=cap, agg=agg)
    assert_close(out.loss, loss)
    assert_close(theta.grad, grad)


@SETTINGS
@given(batches(), CAPS)
def test_grpo_and_gspo_weight_by_truncated_proximal_over_behaviour(batch, cap):
    logp, old, mu = _three_policies(batch)
    L = [x.double().tolist() for x in (logp, old, mu)]
    mask = batch.mask.tolist()
    adv = ref.grpo_advantages(batch.rewards.tolist(), batch.group_ids.tolist())
    ratios = [math.exp(a - b) for ra, rb, rm in zip(L[0], L[1], mask) for a, b, m in zip(ra, rb, rm) if m]
    if all(abs(r - c) > 1e-3 for r in ratios for c in (0.8, 1.2)):  # the gradient jumps at the clip bounds
        theta = logp.clone().requires_grad_()
        out = grpo_loss(theta, old, batch.mask, batch.rewards, batch.group_ids, engine_logp=mu, behaviour_cap=cap)
        out.loss.backward()
        loss, grad = ref.ppo(L[0], L[1], mask, [[a] * len(mask[0]) for a in adv], 0.2, None, "seq-mean-token-mean",
                             engine=L[2], behaviour_cap=cap)
        assert_close(out.loss, loss)
        assert_close(theta.grad, grad)
    theta = logp.clone().requires_grad_()
    out = gspo_loss(theta, old, batch.mask, batch.rewards, batch.group_ids, engine_logp=mu, behaviour_cap=cap,
                    clip_eps=10.0, clip_eps_high=10.0)
    out.loss.backward()
    loss, grad = ref.gspo(L[0], L[1], mask, batch.rewards.tolist(), batch.group_ids.tolist(), clip_eps=10.0,
                          clip_eps_high=10.0, engine=L[2], behaviour_cap=cap)
    assert_close(out.loss, loss)
    assert_close(theta.grad, grad)


def test_stale_positive_chunk_is_not_imitated_at_full_weight():
    """A successful trajectory sampled by a stale μ: chunk 0 is twice as likely under π_old as under μ (β = 2 → the
    cap C = 1.5), chunk 1 half as likely (β = 1/2). Before the correction both had weight 1."""
    mask = torch.tensor([[1, 1, 0, 1]], dtype=torch.bool)
    ids = chunk_index(mask)
    theta = torch.full((1, 4), -1.0, requires_grad=True)
    old = torch.full((1, 4), -1.2)
    mu = old.clone()
    mu[0, :2] -= math.log(2.0)
    mu[0, 3] += math.log(2.0)
    out = ipa_loss(theta, old, mu, mask, ids, torch.tensor([1.0]), gamma=1.0, mismatch_high=None,
                   behaviour_cap=1.5, agg="seq-mean-token-sum")
    out.loss.backward()
    torch.testing.assert_close(theta.grad, torch.tensor([[-1.5, -1.5, 0.0, -0.5]]))
    assert out.metrics["behaviour_trunc_frac"] == pytest.approx(0.5)
    assert out.metrics["behaviour_weight_mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("algorithm", ["ipa", "grpo", "gspo", "ppo"])
def test_fresh_samples_are_unweighted(algorithm):
    """μ = π_old (synchronous RL): the decoupled loss is the plain one."""
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 1, 1]], dtype=torch.bool)
    logp = -torch.rand(2, 5)
    old = logp - 0.05
    x = LossInputs(logp, old, old.clone(), mask, chunk_index(mask), torch.tensor([1.0, -1.0]),
                   group_ids=torch.tensor([0, 0]), advantages=torch.tensor([0.5, -0.5]))
    on = compute_loss(algorithm, x)
    off = compute_loss(algorithm, x, behaviour_cap=None)
    torch.testing.assert_close(on.loss, off.loss)
    stale = compute_loss(algorithm, LossInputs(**{**vars(x), "engine_logp": old - 0.5}))
    assert not torch.isclose(stale.loss, off.loss)
