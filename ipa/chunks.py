"""Interaction chunks of a tokenized trajectory (§3.2.4).

A trajectory is prompt/observation tokens (never trained on) interleaved with assistant tokens. An interaction chunk
c_k is one assistant turn: the contiguous assistant tokens between one observation and the next, ending in a tool
call (the last one ends the task). Observation tokens belong to no chunk.

`chunk_index` numbers the chunks of every row of a padded batch, 0..K_b-1 in order, -1 outside chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def chunk_index(assistant_mask: Tensor, turn_ids: Tensor | None = None) -> Tensor:
    """Chunk of every token, [B, T] long: -1 on non-assistant and padding tokens, 0..K_b-1 on assistant tokens.

    Without `turn_ids`, a chunk is a maximal run of contiguous assistant tokens.
    With `turn_ids` (the turn index of each token, -1 outside turns), a chunk is the set of assistant tokens sharing a
    turn id: two adjacent turns with no observation between them are two chunks, and a turn interrupted by a
    non-assistant token stays one chunk. Chunks are numbered in increasing turn-id order (the order of the turns
    when turn ids increase along the row) and densely, so turn ids need not start at 0 or be consecutive.
    """
    mask = assistant_mask.bool()
    if mask.dim() != 2:
        raise ValueError(f"assistant_mask must be [B, T], got shape {tuple(mask.shape)}")
    if turn_ids is None:
        previous = F.pad(mask[:, :-1], (1, 0), value=False)
        starts = mask & ~previous
        ids = starts.long().cumsum(dim=1) - 1
        return ids.masked_fill(~mask, -1)

    if turn_ids.shape != mask.shape:
        raise ValueError(f"turn_ids shape {tuple(turn_ids.shape)} != assistant_mask shape {tuple(mask.shape)}")
    in_turn = mask & (turn_ids >= 0)
    if not bool(in_turn.any()):
        return torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    turns = torch.where(in_turn, turn_ids.long(), 0)
    num_turns = int(turns.max().item()) + 1
    # Dense rank of each turn id within its row: mark the ids present, count them cumulatively.
    present = torch.zeros(mask.shape[0], num_turns, dtype=torch.long, device=mask.device)
    present = present.scatter_add(1, turns, in_turn.long()) > 0
    rank = present.long().cumsum(dim=1) - 1
    return rank.gather(1, turns).masked_fill(~in_turn, -1)


def chunks_per_row(chunk_ids: Tensor) -> Tensor:
    """K_b, the number of chunks of each row, [B] long (ids are dense, so it is 1 + the largest id)."""
    if chunk_ids.shape[1] == 0:
        return torch.zeros(chunk_ids.shape[0], dtype=torch.long, device=chunk_ids.device)
    return chunk_ids.amax(dim=1).clamp(min=-1) + 1


def chunk_mask_to_tokens(chunk_ids: Tensor, per_chunk_mask: Tensor) -> Tensor:
    """Per-chunk bool mask [B, Kmax] -> per-token bool mask [B, T]; tokens outside chunks are False.

    E.g. the SFT mask of Eq. 1-2 from a per-turn "tool call succeeded and relevant" flag, or the expert prefix of
    Eq. 10 from "chunk k was replayed".
    """
    if per_chunk_mask.shape[1] == 0:
        return torch.zeros(chunk_ids.shape, dtype=torch.bool, device=chunk_ids.device)
    if bool((chunk_ids >= per_chunk_mask.shape[1]).any()):
        raise ValueError(f"a chunk id exceeds the {per_chunk_mask.shape[1]} slots of the per-chunk mask")
    gathered = per_chunk_mask.bool().gather(1, chunk_ids.clamp(min=0).long())
    return gathered & (chunk_ids >= 0)
