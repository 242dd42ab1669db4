import ipa_reference as ref
import torch
from hypothesis import given
from hypothesis import strategies as st
from ipa_strategies import SETTINGS, assert_close, batches

from ipa import chunk_index, chunk_mask_to_tokens, chunks_per_row
from ipa.segment import broadcast_to_tokens, num_chunk_slots, segment_count, segment_mean, segment_sum


def test_chunk_index_example():
    # prompt, turn 1 (2 tokens), observation, turn 2 (1 token), observation, padding
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 0]], dtype=torch.bool)
    assert chunk_index(mask).tolist() == [[-1, 0, 0, -1, 1, -1, -1]]


def test_chunk_index_adjacent_turns_and_interrupted_turn():
    mask = torch.tensor([[1, 1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    turns = torch.tensor([[3, 3, 4, 4, -1, 4, 7]])  # turns 3 and 4 touch; turn 4 is interrupted
    assert chunk_index(mask).tolist() == [[0, 0, 0, 0, -1, 1, 1]]
    assert chunk_index(mask, turns).tolist() == [[0, 0, 1, 1, -1, 1, 2]]


def test_chunk_index_empty_and_all_masked():
    assert chunk_index(torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)
    none = torch.zeros(3, 5, dtype=torch.bool)
    assert (chunk_index(none) == -1).all()
    assert (chunk_index(none, torch.full((3, 5), -1)) == -1).all()
    assert chunks_per_row(chunk_index(none)).tolist() == [0, 0, 0]
    assert num_chunk_slots(chunk_index(none)) == 0


@SETTINGS
@given(batches())
def test_chunk_index_matches_reference(batch):
    mask = batch.full_mask.tolist()
    assert chunk_index(batch.full_mask).tolist() == ref.chunk_index(mask)
    assert chunk_index(batch.full_mask, batch.turn_ids).tolist() == ref.chunk_index(mask, batch.turn_ids.tolist())


@SETTINGS
@given(batches(), st.integers(0, 3))
def test_segment_reductions_match_loops(batch, extra_slots):
    ids = batch.chunk_ids.masked_fill(~batch.mask, -1)
    K = num_chunk_slots(batch.chunk_ids) + extra_slots
    values = torch.where(batch.mask, batch.logp, 0.0)
    sums, counts, means = segment_sum(values, ids, K), segment_count(ids, K), segment_mean(values, ids, K)
    B, T = ids.shape
    for b in range(B):
        for k in range(K):
            toks = [t for t in range(T) if ids[b, t] == k]
            assert counts[b, k] == len(toks)
            assert_close(sums[b, k], sum(float(values[b, t]) for t in toks))
            assert_close(means[b, k], sum(float(values[b, t]) for t in toks) / max(len(toks), 1))
    per_chunk = torch.randn(B, K)
    tokens = broadcast_to_tokens(per_chunk, ids, fill=-7.0)
    for b in range(B):
        for t in range(T):
            assert tokens[b, t] == (per_chunk[b, ids[b, t]] if ids[b, t] >= 0 else -7.0)


@SETTINGS
@given(batches())
def test_chunks_per_row_and_chunk_mask_to_tokens(batch):
    ids = batch.chunk_ids
    assert chunks_per_row(ids).tolist() == [max(row, default=-1) + 1 for row in ids.tolist()]
    K = max(num_chunk_slots(ids), 1)
    flags = torch.arange(K).remainder(2).bool().expand(ids.shape[0], K)  # keep odd chunks
    tokens = chunk_mask_to_tokens(ids, flags)
    assert tokens.tolist() == [[i >= 0 and i % 2 == 1 for i in row] for row in ids.tolist()]


def test_segment_sum_gradient_flows_to_chunk_tokens_only():
    ids = torch.tensor([[0, 0, -1, 1]])
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    segment_sum(x, ids, 2).sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0, 0.0, 1.0]]
