"""Per-token log-probabilities and entropies from a causal LM, aligned so that position t scores token t.

The logits at position t-1 predict token t, so logp[:, 0] (the first token has no context) is 0.

`forward_logprobs` never holds full-vocabulary logits for the whole micro-batch: the model runs to its last hidden
state, then the output head + log-softmax are applied `chunk_tokens` positions at a time (in float32). With gradients
each chunk runs under activation checkpointing, so backward recomputes one chunk's logits at a time instead of keeping
every chunk's. `shifted_logprobs` / `shifted_entropy` are the same arithmetic on ready-made [B, T, V] logits."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK_TOKENS = 1024  # 1024 x 152k vocab x 4 bytes = 0.6 GB of float32 logits per chunk


def shifted_logprobs(logits: Tensor, input_ids: Tensor, temperature: float = 1.0) -> Tensor:
    """[B,T,V] logits + [B,T] ids -> [B,T] log π(token_t | tokens_<t), 0 at t=0."""
    scores = logits[:, :-1].float()
    if temperature != 1.0:
        scores = scores / temperature
    picked = scores.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return F.pad(picked - torch.logsumexp(scores, dim=-1), (1, 0))


def shifted_entropy(logits: Tensor) -> Tensor:
    """[B,T,V] -> [B,T] entropy of the distribution that scored token t (0 at t=0)."""
    scores = logits[:, :-1].float()
    logp = torch.log_softmax(scores, dim=-1)
    return F.pad(-(logp.exp() * logp).sum(-1), (1, 0))


def _causal_lm(model) -> torch.nn.Module:
    """The Hugging Face causal LM itself (DeepSpeed engines wrap it as `.module`)."""
    inner = getattr(model, "module", model)
    for attribute in ("final_logit_softcapping", "logit_scale"):
        if getattr(inner.config, attribute, None) not in (None, 1.0):
            # The head would be more than a linear layer; scoring it chunk-wise here would silently differ.
            raise NotImplementedError(f"chunked log-probs do not apply the model's {attribute}")
    return inner


def _head_chunk(head: torch.nn.Module, hidden: Tensor, targets: Tensor, temperature: float,
                with_entropy: bool) -> tuple[Tensor, Tensor]:
    """[N,H] hidden states + [N] next tokens -> ([N] log-probs, [N] entropies or an empty tensor)."""
    scores = head(hidden).float()
    if temperature != 1.0:
        scores = scores / temperature
    log_norm = torch.logsumexp(scores, dim=-1)
    logp = scores.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_norm
    if not with_entropy:
        return logp, scores.new_zeros(0)
    log_probs = scores - log_norm.unsqueeze(-1)
    return logp, -(log_probs.exp() * log_probs).sum(-1)


def _last_hidden_state(model, lm: torch.nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Run `model` (through its wrapper, so DeepSpeed's hooks run) keeping only the decoder's output; the head
    scores just one position there (logits_to_keep=1)."""
    captured: list[Tensor] = []

    def keep(_module, _args, output):
        captured.append(output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0])

    handle = lm.get_decoder().register_forward_hook(keep)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=1)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"expected one decoder pass, saw {len(captured)}")
    return captured[0]


def forward_logprobs(model, input_ids: Tensor, attention_mask: Tensor, *, with_entropy: bool = False,
                     temperature: float = 1.0, chunk_tokens: int = DEFAULT_CHUNK_TOKENS
                     ) -> tuple[Tensor, Tensor | None]:
    """Run `model` (an HF causal LM or a DeepSpeed engine wrapping one) and return (logp, entropy or None), [B,T]
    each, scoring `chunk_tokens` positions at a time."""
    if chunk_tokens < 1:
        raise ValueError("chunk_tokens must be >= 1")
    lm = _causal_lm(model)
    head = lm.get_output_embeddings()
    hidden = _last_hidden_state(model, lm, input_ids, attention_mask)
    batch, length = input_ids.shape
    flat_hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    flat_targets = input_ids[:, 1:].reshape(-1)
    recompute = torch.is_grad_enabled() and flat_hidden.requires_grad
    logps, entropies = [], []
    for start in range(0, flat_targets.numel(), chunk_tokens):
        args = (head, flat_hidden[start:start + chunk_tokens], flat_targets[start:start + chunk_tokens],
                temperature, with_entropy)
        logp, entropy = checkpoint(_head_chunk, *args, use_reentrant=False) if recompute else _head_chunk(*args)
        logps.append(logp)
        entropies.append(entropy)

    def assemble(parts: list[Tensor]) -> Tensor:
        joined = torch.cat(parts) if parts else flat_hidden.new_zeros(0, dtype=torch.float32)
        return F.pad(joined.reshape(batch, length - 1), (1, 0))

    return assemble(logps), assemble(entropies) if with_entropy else None


def micro_batch_logprobs(model, micro_batches: list, device: torch.device) -> list[Tensor]:
    """Log-probs [B,T] of each micro-batch under `model` (no grad, padding scored 0), as CPU float32 tensors."""
    out = []
    with torch.no_grad():
        for mb in micro_batches:
            mb = mb.to(device)
            logp, _ = forward_logprobs(model, mb.input_ids, mb.attention_mask, temperature=mb.temperature)
            out.append(logp.masked_fill(mb.attention_mask == 0, 0.0).float().cpu())
    return out
