"""From a per-token loss matrix to the scalar that `.backward()` is called on.

With ℓ_{i,t} the loss of token t of sequence i, m_{i,t} ∈ {0,1} whether it is trained on, n_i = Σ_t m_{i,t}:

    token-mean               Σ_i Σ_t m ℓ / N_tok                      N_tok = Σ_i n_i
    seq-mean-token-sum       Σ_i (Σ_t m ℓ) / N_seq                    N_seq = #{i : n_i > 0}
    seq-mean-token-mean      Σ_i (Σ_t m ℓ / n_i) / N_seq
    seq-mean-token-sum-norm  Σ_i (Σ_t m ℓ / L) / N_seq                L = a constant length (Dr. GRPO)

`global_denominator` replaces N_tok (token-mean) or N_seq (the seq-mean modes) by a number the caller computed over
the whole global batch (all data-parallel ranks and micro-batches), so that summing the gradients of every
micro-batch gives the gradient of the global batch. Masked-out tokens count neither in the numerator nor in n_i.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def check_agg(mode: str) -> None:
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGG_MODES}")


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str = "token-mean",
    global_denominator: float | Tensor | None = None,
    norm_length: float | None = None,
) -> Tensor:
    """Scalar loss from `loss_mat` [B, T] over the tokens where `mask` [B, T] holds (see the module docstring).

    `norm_length` is L of seq-mean-token-sum-norm; it defaults to T, the padded length, but should be a constant
    (e.g. the maximum sequence length) for the scale to stay fixed across steps and micro-batches.
    A batch with nothing to train on gives 0 (still attached to the graph).
    """
    check_agg(mode)
    mask = mask.bool()
    masked = torch.where(mask, loss_mat, torch.zeros_like(loss_mat))
    if mode == "token-mean":
        denominator = global_denominator if global_denominator is not None else mask.sum().clamp(min=1)
        return masked.sum() / denominator

    per_seq = masked.sum(dim=1)
    if mode == "seq-mean-token-mean":
        per_seq = per_seq / mask.sum(dim=1).clamp(min=1).to(per_seq.dtype)
    elif mode == "seq-mean-token-sum-norm":
        per_seq = per_seq / float(norm_length if norm_length is not None else loss_mat.shape[1])
    denominator = global_denominator if global_denominator is not None else mask.any(dim=1).sum().clamp(min=1)
    return per_seq.sum() / denominator


def local_denominator(mask: Tensor, mode: str) -> Tensor:
    """This batch's share of the global denominator: sum it over ranks and micro-batches, pass it back as
    `global_denominator`."""
    check_agg(mode)
    mask = mask.bool()
    return mask.sum() if mode == "token-mean" else mask.any(dim=1).sum()
