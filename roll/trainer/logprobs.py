"""Per-token log-probabilities and entropies from a causal LM, aligned so that position t scores token t.

The logits at position t-1 predict token t, so logp[:, 0] (the first token has no context) is 0. Computed in float32
as gather(logits) - logsumexp(logits), which never materialises a second [B, T, V] tensor."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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


def forward_logprobs(model, input_ids: Tensor, attention_mask: Tensor, *, with_entropy: bool = False,
                     temperature: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """Run `model` (an HF causal LM or a DeepSpeed engine wrapping one) and return (logp, entropy or None)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logp = shifted_logprobs(logits, input_ids, temperature)
    entropy = shifted_entropy(logits) if with_entropy else None
    return logp, entropy


def micro_batch_logprobs(model, micro_batches: list, device: torch.device) -> list[Tensor]:
    """Log-probs [B,T] of each micro-batch under `model` (no grad, padding scored 0), as CPU float32 tensors."""
    out = []
    with torch.no_grad():
        for mb in micro_batches:
            mb = mb.to(device)
            logp, _ = forward_logprobs(model, mb.input_ids, mb.attention_mask)
            out.append(logp.masked_fill(mb.attention_mask == 0, 0.0).float().cpu())
    return out
