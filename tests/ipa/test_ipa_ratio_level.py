"""IPA with the importance ratio at token, chunk or sequence level (the paper's Fig. 9 ablation)."""

import pytest
import torch

from ipa import RATIO_LEVELS, compute_loss, ipa_loss, ratio_at_level
from ipa.types import LossInputs

# One row, two chunks of three tokens each; the middle token of chunk 0 moved far from π_old.
CHUNK_IDS = torch.tensor([[0, 0, 0, 1, 1, 1]])
MASK = torch.ones(1, 6, dtype=torch.bool)
OLD = torch.full((1, 6), -1.0)
SHIFT = torch.tensor([[-0.1, 0.9, -0.1, -0.4, -0.4, -0.4]])  # log π_θ − log π_old


def _token_grads(reward: float, level: str) -> torch.Tensor:
    logp = (OLD + SHIFT).clone().requires_grad_(True)
    out = ipa_loss(logp, OLD, OLD, MASK, CHUNK_IDS, torch.tensor([reward]), gamma=1.0, mismatch_high=None,
                   behaviour_cap=None, agg="seq-mean-token-sum", ratio_level=level)
    out.loss.backward()
    return logp.grad[0]


def test_token_level_weights_each_failed_token_by_its_own_clipped_ratio():
    grad = _token_grads(-1.0, "token")
    expected = torch.exp(SHIFT[0]).clamp(max=1.0)  # −∂ℓ_t/∂log π_θ(t) = w_t · G with G = −1
    torch.testing.assert_close(grad, expected)


def test_chunk_level_weights_every_token_of_a_chunk_alike():
    grad = _token_grads(-1.0, "chunk")
    rho = torch.exp(torch.stack([SHIFT[0, :3].mean(), SHIFT[0, 3:].mean()]))
    torch.testing.assert_close(grad, torch.repeat_interleave(rho.clamp(max=1.0), 3))
    assert float(rho[0]) > 1.0 and float(rho[1]) < 1.0  # the clip binds on chunk 0 only


def test_sequence_level_weights_the_whole_row_alike():
    grad = _token_grads(-1.0, "sequence")
    rho = torch.exp(SHIFT[0].mean()).clamp(max=1.0)
    torch.testing.assert_close(grad, rho.expand(6))


@pytest.mark.parametrize("level", RATIO_LEVELS)
def test_successes_are_imitated_whatever_the_level(level):
    torch.testing.assert_close(_token_grads(1.0, level), torch.full((6,), -1.0))


def test_clip_frac_counts_the_level_units():
    logp = OLD + SHIFT
    fractions = {level: ipa_loss(logp, OLD, OLD, MASK, CHUNK_IDS, torch.tensor([-1.0]), mismatch_high=None,
                                 ratio_level=level).metrics["clip_frac"] for level in RATIO_LEVELS}
    assert fractions == pytest.approx({"token": 1 / 6, "chunk": 1 / 2, "sequence": 0.0})


def test_ratio_at_level_ignores_untrained_tokens():
    trained = torch.tensor([[True, True, False, True, False, False]])
    ids = CHUNK_IDS.masked_fill(~trained, -1)
    logp = OLD + SHIFT.masked_fill(~trained, 50.0)  # huge shifts on untrained tokens must not count
    per_token, per_row, units = ratio_at_level(logp, OLD, trained, ids, 2, "sequence")
    torch.testing.assert_close(per_row, torch.exp(torch.tensor([(-0.1 + 0.9 - 0.4) / 3])))
    assert per_token[0, 2] == 1.0 and bool(units[0])


def test_unknown_ratio_level_is_refused():
    with pytest.raises(ValueError, match="ratio_level"):
        ipa_loss(OLD, OLD, OLD, MASK, CHUNK_IDS, torch.tensor([1.0]), ratio_level="trajectory")


def test_compute_loss_passes_ratio_level_through():
    inputs = LossInputs(logp=OLD + SHIFT, old_logp=OLD, engine_logp=OLD, assistant_mask=MASK, chunk_ids=CHUNK_IDS,
                        rewards=torch.tensor([-1.0]))
    token = compute_loss("ipa", inputs, ratio_level="token", mismatch_high=None).metrics["clip_frac"]
    chunk = compute_loss("ipa", inputs, mismatch_high=None).metrics["clip_frac"]
    assert (token, chunk) == pytest.approx((1 / 6, 1 / 2))
