import ipa_reference as ref
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import (
    chunk_index,
    chunk_mask_to_tokens,
    crucial_fork,
    expert_prefix_mask,
    hybrid_loss,
    ipa_loss,
    parallel_anchors,
    rollback_anchors,
    sft_loss,
    success_rates,
)


@SETTINGS
@given(batches(), st.sampled_from((torch.float32, torch.bfloat16)), st.sampled_from((None, 40.0)))
def test_sft_loss_matches_reference(batch, dtype, denominator):
    logp = batch.logp.to(dtype).requires_grad_()
    out = sft_loss(logp, batch.mask, denominator)
    out.loss.backward()
    loss, grad = ref.sft(batch.logp.to(dtype).double().tolist(), batch.mask.tolist(), denominator)
    assert_close(out.loss, loss, rtol=1e-3)
    assert_close(logp.grad, grad, rtol=1e-2)
    assert out.metrics["num_tokens"] == batch.mask.sum().item()


def test_sft_error_masking_by_turn():
    """Eq. 1-2: the turn whose tool call failed (chunk 1) is not trained on."""
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 1]], dtype=torch.bool)
    ids = chunk_index(mask)
    turn_ok = torch.tensor([[True, False, True]])
    loss_mask = chunk_mask_to_tokens(ids, turn_ok)
    assert loss_mask.tolist() == [[False, True, True, False, False, False, True]]
    logp = torch.log(torch.tensor([[0.1, 0.5, 0.5, 0.1, 0.01, 0.1, 0.25]]))
    assert sft_loss(logp, loss_mask).loss.item() == pytest.approx(
        -(2 * torch.log(torch.tensor(0.5)) + torch.log(torch.tensor(0.25))).item() / 3
    )


@SETTINGS
@given(batches(drop_tokens=False), st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_hybrid_loss_is_weighted_sum(batch, lambda_il, lambda_rl):
    B = batch.mask.shape[0]
    anchors = torch.randint(0, 4, (B,))
    expert = expert_prefix_mask(batch.chunk_ids, anchors)

    def grads(fn):
        logp = batch.logp.clone().requires_grad_()
        loss = fn(logp)
        loss.backward()
        return loss.detach(), logp.grad

    args = (batch.old_logp, batch.engine_logp)
    hybrid, g_hybrid = grads(
        lambda lp: (
            hybrid_loss(
                lp,
                *args,
                batch.mask,
                batch.chunk_ids,
                batch.rewards,
                expert,
                lambda_il=lambda_il,
                lambda_rl=lambda_rl,
                gamma=0.9,
            ).loss
        )
    )
    il, g_il = grads(lambda lp: sft_loss(lp, batch.mask & expert).loss)
    rl, g_rl = grads(
        lambda lp: ipa_loss(lp, *args, batch.mask & ~expert, batch.chunk_ids, batch.rewards, gamma=0.9).loss
    )
    assert_close(hybrid, lambda_il * il + lambda_rl * rl)
    assert_close(g_hybrid, lambda_il * g_il + lambda_rl * g_rl)


def test_expert_prefix_mask():
    ids = torch.tensor([[-1, 0, 0, -1, 1, -1, 2], [0, -1, 1, 1, -1, -1, -1]])
    mask = expert_prefix_mask(ids, torch.tensor([2, 0]))
    assert mask.tolist() == [[False, True, True, False, True, False, False], [False] * 7]


def test_parallel_anchors():
    assert parallel_anchors(10, 5, "uniform").tolist() == [0, 2, 4, 6, 8]
    assert parallel_anchors(10, 3, "uniform").tolist() == [0, 3, 6]
    assert parallel_anchors(4, 9, "uniform").tolist() == [0, 1, 2, 3]
    assert parallel_anchors(0, 3).numel() == 0
    g = torch.Generator().manual_seed(0)
    random = parallel_anchors(20, 6, "random", generator=g)
    assert random.numel() == 6 and random.unique().numel() == 6 and (random.sort().values == random).all()
    assert random.min() >= 0 and random.max() < 20
    with pytest.raises(ValueError, match="spread"):
        parallel_anchors(5, 2, "spread")


def test_rollback_anchors():
    assert rollback_anchors(5).tolist() == [4, 3, 2, 1, 0]
    assert rollback_anchors(7, step=3).tolist() == [6, 3, 0]
    assert rollback_anchors(7, step=2, max_anchors=2).tolist() == [6, 4]
    with pytest.raises(ValueError):
        rollback_anchors(5, step=0)


def test_success_rates():
    outcomes = torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool)
    rates = success_rates(outcomes, torch.tensor([0, 0, 1, 1, 2]), num_anchors=4)
    assert rates[:3].tolist() == [0.5, 1.0, 0.0] and torch.isnan(rates[3])


def test_crucial_fork():
    anchors = torch.tensor([0, 2, 4, 6, 8])
    rates = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0])  # the big jump is between prefixes 4 and 6
    assert crucial_fork(anchors, rates) == 4
    assert crucial_fork(anchors.flip(0), rates.flip(0)) == 4  # order does not matter
    assert crucial_fork(anchors, rates, threshold=0.5) == 4  # rollback: last anchor still failing
    assert crucial_fork(anchors, torch.ones(5), threshold=0.5) == -1  # succeeds from everywhere
    assert crucial_fork(anchors, torch.ones(5)) == -1  # no rise
    assert crucial_fork(anchors, torch.tensor([0.0, 0.5, 0.5, 1.0, 1.0])) == 4  # ties: the latest
    assert crucial_fork(anchors, torch.tensor([0.0, float("nan"), 0.1, 0.9, 1.0])) == 4
    assert crucial_fork(torch.tensor([3]), torch.tensor([0.0])) == -1
    assert crucial_fork(torch.tensor([3]), torch.tensor([0.0]), threshold=0.5) == 3
