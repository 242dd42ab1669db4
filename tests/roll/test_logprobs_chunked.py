"""Chunked log-probs: the output head sees at most `chunk_tokens` positions at a time, and log-probs, entropies and
their gradients equal the full-logits computation (model(...).logits -> log-softmax over [B, T, V])."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from roll.trainer.logprobs import forward_logprobs, shifted_entropy, shifted_logprobs


@pytest.fixture(scope="module")
def model(tiny_model_path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)


def batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 23), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0  # right padding, as the trainer's micro-batches have
    mask[2, 9:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def full_logits_reference(model, ids, mask, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return shifted_logprobs(logits, ids, temperature), shifted_entropy(logits / temperature)


def assert_same_gradient(value: torch.Tensor, reference: torch.Tensor, name: str) -> None:
    """Equal up to float32 summation order: within 1e-5 of the tensor's largest entry."""
    error = float((value - reference).abs().max())
    assert error <= 1e-5 * float(reference.abs().max()) + 1e-8, (name, error)


def gradients(model, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("chunk_tokens", [1, 7, 10_000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_and_gradients_equal_full_logits(model, chunk_tokens: int, temperature: float) -> None:
    ids, mask = batch(model.config.vocab_size)
    weights = torch.linspace(-1.0, 2.0, ids.numel()).reshape(ids.shape) * mask

    ref_logp, ref_entropy = full_logits_reference(model, ids, mask, temperature)
    ref_grads = gradients(model, (ref_logp * weights).sum() + 0.3 * (ref_entropy * mask).sum())

    logp, entropy = forward_logprobs(model, ids, mask, with_entropy=True, temperature=temperature,
                                     chunk_tokens=chunk_tokens)
    torch.testing.assert_close(logp, ref_logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, ref_entropy, rtol=1e-5, atol=1e-5)
    grads = gradients(model, (logp * weights).sum() + 0.3 * (entropy * mask).sum())
    assert sorted(grads) == sorted(ref_grads)  # lm_head and every transformer weight get their gradient
    for name, value in ref_grads.items():
        assert_same_gradient(grads[name], value, name)


def test_with_gradient_checkpointing_of_the_transformer(tiny_model_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    checkpointed = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    checkpointed.gradient_checkpointing_enable()
    checkpointed.train()
    plain.train()  # the tiny model has no dropout: train mode changes nothing but enables checkpointing
    ids, mask = batch(plain.config.vocab_size)
    ref_logp, _ = full_logits_reference(plain, ids, mask, 1.0)
    ref_grads = gradients(plain, (ref_logp * mask).sum())
    logp, _ = forward_logprobs(checkpointed, ids, mask, chunk_tokens=16)
    grads = gradients(checkpointed, (logp * mask).sum())
    torch.testing.assert_close(logp, ref_logp, rtol=1e-5, atol=1e-5)
    for name, value in ref_grads.items():
        assert_same_gradient(grads[name], value, name)


@pytest.mark.parametrize("grad", [False, True])
def test_the_head_never_scores_more_than_one_chunk(model, grad: bool) -> None:
    ids, mask = batch(model.config.vocab_size)
    rows: list[int] = []
    handle = model.get_output_embeddings().register_forward_hook(
        lambda _m, _args, out: rows.append(out.shape[:-1].numel()))
    try:
        with torch.set_grad_enabled(grad):
            logp, _ = forward_logprobs(model, ids, mask, chunk_tokens=8)
            if grad:
                logp.sum().backward()  # recomputes each chunk's logits, one chunk at a time
    finally:
        handle.remove()
    assert max(rows) <= 8
    assert sum(rows) >= ids.shape[0] * (ids.shape[1] - 1)  # every scored position went through the head
