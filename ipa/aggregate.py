"""From a per-token loss matrix to the scalar that `.backward()` is called on.

With ℓ_{i,t} the loss of token t of sequence i, m_{i,t} ∈ {0,1} whether it is trained on, n_i = Σ_t m_{i,t}:

    token-mean               Σ_i Σ_t m ℓ / N_tok                      N_tok = Σ_i n_i
    seq-mean-token-sum       Σ_i (Σ_t m ℓ) / N_seq                    N_seq = #{i : n_i > 0}
    seq-mean-token-mean      Σ_i (Σ_t m ℓ / n_i) / N_seq
    seq-mean-token-sum-norm  Σ_i (Σ_t m ℓ / L) / N_seq                L = a constant length (Dr. GRPO)

`global_denominator` replaces N_tok (token-mean) or N_seq (the seq-mean modes) by a number the caller computed over
the whole global batch (all data-parallel ranks and micro-batches), so that summing the gradients of every
micro-batch gives the gradient of the global batch. Masked-out tokens count neither in the numerator nor in n_i.

With `trajectory_ids` (rows of one forked trajectory share an id, see trajectories.py) "sequence" means trajectory:
N_seq counts trajectories, and n_i of seq-mean-token-mean is the trained-token count of the row's whole trajectory,
so a trajectory split into pieces weighs what it would weigh unsplit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ipa.trajectories import row_shares, trajectory_token_counts

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
    trajectory_ids: Tensor | None = None,
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
        per_seq = per_seq / trajectory_token_counts(mask, trajectory_ids).clamp(min=1).to(per_seq.dtype)
    elif mode == "seq-mean-token-sum-norm":
        per_seq = per_seq / float(norm_length if norm_length is not None else loss_mat.shape[1])
    if global_denominator is not None:
        denominator = global_denominator
    else:
        denominator = row_shares(mask, trajectory_ids).sum().clamp(min=1)
    return per_seq.sum() / denominator


def local_denominator(mask: Tensor, mode: str, trajectory_ids: Tensor | None = None) -> Tensor:
    """This batch's share of the global denominator: sum it over ranks and micro-batches, pass it back as
    `global_denominator`. With `trajectory_ids` a seq-mean mode counts trajectories (all rows of a trajectory must
    then be in this batch)."""
    check_agg(mode)
    mask = mask.bool()
    return mask.sum() if mode == "token-mean" else row_shares(mask, trajectory_ids).sum()
