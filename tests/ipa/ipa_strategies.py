"""Hypothesis strategies: random padded batches of tokenized trajectories.

Structure (masks, turns, rewards, groups, padding) is drawn by hypothesis; float values come from a seeded torch
generator (cheap to draw, still reproducible). Positions that are not trained on hold a junk value (0, a huge
number, inf or nan) to check that no loss reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import settings
from hypothesis import strategies as st

from ipa import chunk_index

SETTINGS = settings(max_examples=60, deadline=None)
REWARDS = (-1.0, 0.0, 1.0, 0.5, -0.25, 2.0)
JUNK = (0.0, -1e4, float("inf"), float("nan"))


@dataclass
class Batch:
    logp: torch.Tensor
    old_logp: torch.Tensor
    engine_logp: torch.Tensor
    ref_logp: torch.Tensor
    entropy: torch.Tensor
    full_mask: torch.Tensor  # assistant tokens (define the chunks)
    mask: torch.Tensor  # tokens trained on: full_mask minus some dropped tokens
    turn_ids: torch.Tensor
    chunk_ids: torch.Tensor
    rewards: torch.Tensor
    group_ids: torch.Tensor
    chunk_rewards: torch.Tensor

    def lists(self):
        return {k: v.tolist() for k, v in vars(self).items()}


@st.composite
def batches(draw, max_b: int = 4, max_t: int = 16, drop_tokens: bool = True, use_turns: bool | None = None) -> Batch:
    B = draw(st.integers(1, max_b))
    T = draw(st.integers(1, max_t))
    if use_turns is None:
        use_turns = draw(st.booleans())
    mask = torch.zeros(B, T, dtype=torch.bool)
    turns = torch.full((B, T), -1, dtype=torch.long)
    for b in range(B):
        length = draw(st.integers(0, T))  # the rest of the row is padding
        kinds = draw(st.lists(st.booleans(), min_size=length, max_size=length))
        splits = draw(st.lists(st.booleans(), min_size=length, max_size=length))
        turn, previous = -1, False
        for t, is_assistant in enumerate(kinds):
            if is_assistant and (not previous or (use_turns and splits[t])):
                turn += 1  # a new turn: after an observation, or right after another turn
            mask[b, t] = is_assistant
            turns[b, t] = turn if is_assistant else -1
            previous = is_assistant
    chunk_ids = chunk_index(mask, turns if use_turns else None)

    trained = mask.clone()
    if drop_tokens and draw(st.booleans()):
        drops = draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))
        trained &= ~torch.tensor(drops).view(B, T)

    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    mismatch_scale = draw(st.sampled_from((0.0, 0.1, 2.0)))
    junk = draw(st.sampled_from(JUNK))
    logp = -3.0 * torch.rand(B, T, generator=g)
    old = logp + 0.3 * torch.randn(B, T, generator=g)
    engine = old + mismatch_scale * torch.randn(B, T, generator=g)
    ref = logp + 0.5 * torch.randn(B, T, generator=g)
    entropy = torch.rand(B, T, generator=g)
    K = max(int(chunk_ids.max()) + 1, 1)
    chunk_rewards = torch.randn(B, K + draw(st.integers(0, 2)), generator=g)

    def junked(x):
        return torch.where(trained, x, junk)

    rewards = torch.tensor(draw(st.lists(st.sampled_from(REWARDS), min_size=B, max_size=B)))
    groups = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=B, max_size=B)))
    return Batch(
        junked(logp),
        junked(old),
        junked(engine),
        junked(ref),
        junked(entropy),
        mask,
        trained,
        turns,
        chunk_ids,
        rewards,
        groups,
        chunk_rewards,
    )


def assert_close(actual, expected, rtol=1e-4, atol=1e-5):
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
