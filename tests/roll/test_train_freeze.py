"""Partial fine-tuning (`trainer.trainable_layers`): only the top blocks learn, and DeepSpeed's update of them equals
plain torch with the same parameters frozen."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from roll.config.training import AlgorithmConfig
from roll.trainer.freeze import decoder_blocks, freeze_lower_layers
from roll.trainer.update import attach, prepare, run_update
from tests.roll.test_train_trainer import LR, STEPS, make_samples, reference_update, trainer_config

TOP = 1


def test_freeze_keeps_the_top_blocks_the_norm_and_an_untied_head(tiny_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    blocks = len(decoder_blocks(model))
    trainable = freeze_lower_layers(model, TOP)
    learning = {name for name, p in model.named_parameters() if p.requires_grad}
    assert learning and all(name.startswith((f"model.layers.{blocks - 1}.", "model.norm.", "lm_head."))
                            for name in learning)
    assert "lm_head.weight" in learning and "model.embed_tokens.weight" not in learning  # the tiny head is untied
    assert trainable == sum(p.numel() for name, p in model.named_parameters() if name in learning)
    ids = torch.tensor([[5, 6, 7, 8]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert all((p.grad is None) != p.requires_grad for p in model.parameters())  # backward stops above the trunk
    with pytest.raises(ValueError, match="trainable_layers=99"):
        freeze_lower_layers(model, 99)


def test_deepspeed_update_with_frozen_lower_blocks_equals_plain_torch(ray_local, tiny_model_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    from roll.trainer.group import TrainerGroup

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size)
    initial = {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_pretrained(tiny_model_path).named_parameters()}
    original = AutoModelForCausalLM.from_pretrained

    def frozen_from_pretrained(*args, **kwargs):  # the plain-torch reference, frozen the same way
        model = original(*args, **kwargs)
        freeze_lower_layers(model, TOP)
        return model

    with monkeypatch.context() as patch:
        patch.setattr(AutoModelForCausalLM, "from_pretrained", frozen_from_pretrained)
        ref_losses, ref_weights = reference_update(tiny_model_path, samples, AlgorithmConfig(name="ipa"))
    cfg = trainer_config(1, 2).model_copy(update={"trainable_layers": TOP})
    algo = AlgorithmConfig(name="ipa")
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=STEPS)
    try:
        assert group.info[0]["trainable_parameters"] < group.info[0]["parameters"] / 2
        update = prepare(samples, algo, cfg, pad_id=0)
        attach(update, group.compute_logprobs(update.plan), "old_logp")
        results = [run_update(group, update, algo) for _ in range(STEPS)]
        weights = group.state_dict()
        losses = [r["loss"] for r in results]
    finally:
        group.shutdown()
    assert losses == pytest.approx(ref_losses, rel=1e-4, abs=1e-6)
    assert all(0.05 < r["train_peak_rss_gb"] < 64 for r in results)  # the trainer's own peak, reported per update
    top = f"model.layers.{AutoConfig.from_pretrained(tiny_model_path).num_hidden_layers - 1}."
    for name, value in weights.items():
        moved = float((value - initial[name]).abs().max())
        if name.startswith((top, "model.norm.", "lm_head.")):
            assert moved > 0.1 * LR, name
            assert float((value - ref_weights[name]).abs().max()) < 0.05 * LR, name
        else:
            assert moved == 0.0, name
