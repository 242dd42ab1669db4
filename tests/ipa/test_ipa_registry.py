import pytest
import torch
from hypothesis import given
from ipa_strategies import SETTINGS, batches

import ipa
from ipa import ALGORITHM_PARAMS, ALGORITHMS, LossInputs, LossOutput, compute_loss

METRICS = {"loss", "ratio_mean", "ratio_max", "clip_frac", "token_mask_frac"}


def _inputs(batch, logp):
    return LossInputs(
        logp=logp,
        old_logp=batch.old_logp,
        engine_logp=batch.engine_logp,
        assistant_mask=batch.mask,
        chunk_ids=batch.chunk_ids,
        rewards=batch.rewards,
        group_ids=batch.group_ids,
        ref_logp=batch.ref_logp,
        entropy=batch.entropy,
        advantages=torch.where(batch.mask, batch.rewards.unsqueeze(1).expand_as(batch.mask), 0.0),
    )


def test_public_interface():
    for name in ("LossInputs", "LossOutput", "compute_loss", "ALGORITHMS", "chunk_index", "sft_loss"):
        assert hasattr(ipa, name)
    assert ALGORITHMS == ("ipa", "grpo", "gspo", "ppo", "reinforce")
    assert set(ALGORITHM_PARAMS) == set(ALGORITHMS)


@SETTINGS
@given(batches(max_b=3, max_t=10))
def test_compute_loss_dispatches_to_the_pure_functions(batch):
    direct = {
        "ipa": lambda lp: ipa.ipa_loss(
            lp, batch.old_logp, batch.engine_logp, batch.mask, batch.chunk_ids, batch.rewards, gamma=0.9
        ),
        "grpo": lambda lp: ipa.grpo_loss(
            lp, batch.old_logp, batch.mask, batch.rewards, batch.group_ids, clip_eps=0.1, engine_logp=batch.engine_logp
        ),
        "gspo": lambda lp: ipa.gspo_loss(
            lp, batch.old_logp, batch.mask, batch.rewards, batch.group_ids, engine_logp=batch.engine_logp
        ),
        "ppo": lambda lp: ipa.ppo_loss(
            lp, batch.old_logp, batch.mask, _inputs(batch, lp).advantages, engine_logp=batch.engine_logp
        ),
        "reinforce": lambda lp: ipa.reinforce_loss(
            lp, batch.engine_logp, batch.mask, batch.rewards, batch.group_ids, baseline="rloo"
        ),
    }
    params = {
        "ipa": {"gamma": 0.9},
        "grpo": {"clip_eps": 0.1},
        "gspo": {},
        "ppo": {},
        "reinforce": {"baseline": "rloo"},
    }
    for algorithm in ALGORITHMS:
        out = compute_loss(algorithm, _inputs(batch, batch.logp), **params[algorithm])
        assert isinstance(out, LossOutput) and out.loss.dim() == 0
        assert METRICS <= set(out.metrics) and all(isinstance(v, float) for v in out.metrics.values())
        expected = direct[algorithm](batch.logp)
        assert torch.isfinite(out.loss)  # junk (nan, inf) off the mask never leaks in
        torch.testing.assert_close(out.loss, expected.loss)


def test_every_algorithm_backpropagates_with_regularizers():
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    logp = (-torch.rand(2, 6)).requires_grad_()
    x = LossInputs(
        logp,
        logp.detach() - 0.1,
        logp.detach(),
        mask,
        ipa.chunk_index(mask),
        torch.tensor([1.0, 0.0]),
        group_ids=torch.tensor([0, 0]),
        ref_logp=logp.detach() + 0.2,
        entropy=torch.rand(2, 6),
        advantages=torch.randn(2, 6),
    )
    for algorithm in ALGORITHMS:
        logp.grad = None
        out = compute_loss(algorithm, x, kl_coef=0.1, entropy_coef=0.01)
        out.loss.backward()
        assert torch.isfinite(logp.grad).all() and (logp.grad[~mask] == 0).all()
        assert out.metrics["kl"] > 0 and out.metrics["entropy"] > 0


def test_unknown_algorithm_or_parameter_is_named():
    mask = torch.ones(1, 2, dtype=torch.bool)
    x = LossInputs(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), mask, ipa.chunk_index(mask), torch.ones(1))
    with pytest.raises(ValueError, match="'dpo'"):
        compute_loss("dpo", x)
    with pytest.raises(ValueError, match="gama"):
        compute_loss("ipa", x, gama=0.9)
    with pytest.raises(ValueError, match="gamma"):
        compute_loss("grpo", x, gamma=0.9)  # gamma means nothing to GRPO
    with pytest.raises(ValueError, match="advantages"):
        compute_loss("ppo", x)
    with pytest.raises(ValueError, match="aggregation"):
        compute_loss("ipa", x, agg="mean")


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_runs_where_the_inputs_are(device):
    """No hidden device: every loss runs on the inputs' device and returns its loss there."""
    mask = torch.tensor([[0, 1, 1, 0, 1, 1], [1, 1, 0, 1, 0, 0]], dtype=torch.bool, device=device)
    logp = (-torch.rand(2, 6, device=device)).requires_grad_()
    x = LossInputs(
        logp,
        logp.detach() - 0.1,
        logp.detach(),
        mask,
        ipa.chunk_index(mask),
        torch.tensor([1.0, -1.0], device=device),
        group_ids=torch.tensor([0, 0], device=device),
        chunk_rewards=torch.ones(2, 3, device=device),
        advantages=torch.randn(2, 6, device=device),
    )
    for algorithm in ALGORITHMS:
        out = compute_loss(algorithm, x)
        out.loss.backward()
        assert out.loss.device.type == device and logp.grad.device.type == device
    assert ipa.sft_loss(logp, mask).loss.device.type == device
