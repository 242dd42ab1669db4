import ipa_reference as ref
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import AGG_MODES, aggregate, ipa_loss, local_denominator


@SETTINGS
@given(batches(), st.sampled_from(AGG_MODES), st.sampled_from((None, 5.0)), st.sampled_from((None, 32.0)))
def test_aggregate_matches_reference(batch, mode, denominator, norm_length):
    values = torch.where(batch.mask, torch.randn(batch.mask.shape), float("nan"))  # nan off the mask is ignored
    weights = ref.aggregation_weights(batch.mask.tolist(), mode, denominator, norm_length)
    expected = sum(w * v for wr, vr in zip(weights, values.tolist()) for w, v in zip(wr, vr) if w)
    assert_close(aggregate(values, batch.mask, mode, denominator, norm_length), expected)


@SETTINGS
@given(batches(max_b=6), st.sampled_from(AGG_MODES), st.integers(1, 5))
def test_global_denominator_makes_micro_batches_add_up(batch, mode, cut):
    """Split a batch in two 'ranks': with the global denominator, the two losses (and gradients) add up to the
    loss of the whole batch. norm_length is fixed, as it must be for seq-mean-token-sum-norm."""
    B = batch.mask.shape[0]
    cut = min(cut, B)
    common = {"agg": mode, "norm_length": 16.0}

    def run(rows, denominator=None):
        logp = batch.logp[rows].clone().requires_grad_()
        out = ipa_loss(
            logp,
            batch.old_logp[rows],
            batch.engine_logp[rows],
            batch.mask[rows],
            batch.chunk_ids[rows],
            batch.rewards[rows],
            global_denominator=denominator,
            **common,
        )
        out.loss.backward()
        return out.loss.detach(), logp.grad

    whole_loss, whole_grad = run(slice(0, B))
    parts = (slice(0, cut), slice(cut, B))
    denominator = sum(float(local_denominator(batch.mask[p], mode)) for p in parts)
    if denominator == 0:
        return  # nothing to train on anywhere: each part is 0 either way
    results = [run(p, denominator) for p in parts]
    assert_close(sum(r[0] for r in results), whole_loss)
    assert_close(torch.cat([r[1] for r in results]), whole_grad)


def test_modes_by_hand():
    loss = torch.tensor([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)  # row 2: padding only
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx((6 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx((6 / 4 + 4 / 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm_length=10).item() == pytest.approx(0.5)
    assert aggregate(loss, mask, "token-mean", global_denominator=10).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="bogus"):
        aggregate(loss, mask, "bogus")


def test_empty_batch_aggregates_to_attached_zero():
    x = torch.randn(2, 3, requires_grad=True)
    for mode in AGG_MODES:
        out = aggregate(x, torch.zeros(2, 3, dtype=torch.bool), mode)
        out.backward()
        assert out.item() == 0.0 and (x.grad == 0).all()
