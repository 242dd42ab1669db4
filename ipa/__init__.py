"""IPA: the policy-optimization algorithms of "Let It Flow" §3.2.4 and their baselines, as pure torch functions.

Tensors in, tensors out: no I/O, no Ray, no models. See docs/ipa.md for each equation beside its function.
"""

from ipa.advantages import baseline_advantages, group_advantages, group_stats
from ipa.aggregate import AGG_MODES, aggregate, local_denominator
from ipa.baselines import grpo_loss, gspo_loss, ppo_loss, reinforce_loss, token_mismatch_mask
from ipa.chunks import chunk_index, chunk_mask_to_tokens, chunks_per_row
from ipa.ipa_loss import (
    DEFAULT_AGG,
    DEFAULT_GAMMA,
    DEFAULT_MISMATCH_HIGH,
    RATIO_LEVELS,
    chunk_mismatch_mask,
    chunk_ratio,
    chunk_returns,
    discounted_returns,
    ipa_loss,
    ratio_at_level,
    terminal_chunk_rewards,
)
from ipa.registry import ALGORITHM_PARAMS, ALGORITHMS, compute_loss
from ipa.regularizers import kl_k3
from ipa.resampling import crucial_fork, expert_prefix_mask, parallel_anchors, rollback_anchors, success_rates
from ipa.segment import broadcast_to_tokens, segment_count, segment_mean, segment_sum
from ipa.sft import add_imitation, hybrid_loss, sft_loss
from ipa.types import LossInputs, LossOutput

__all__ = [
    "AGG_MODES",
    "ALGORITHMS",
    "ALGORITHM_PARAMS",
    "DEFAULT_AGG",
    "DEFAULT_GAMMA",
    "DEFAULT_MISMATCH_HIGH",
    "LossInputs",
    "LossOutput",
    "RATIO_LEVELS",
    "add_imitation",
    "aggregate",
    "baseline_advantages",
    "broadcast_to_tokens",
    "chunk_index",
    "chunk_mask_to_tokens",
    "chunk_mismatch_mask",
    "chunk_ratio",
    "chunk_returns",
    "chunks_per_row",
    "compute_loss",
    "crucial_fork",
    "discounted_returns",
    "expert_prefix_mask",
    "group_advantages",
    "group_stats",
    "grpo_loss",
    "gspo_loss",
    "hybrid_loss",
    "ipa_loss",
    "kl_k3",
    "local_denominator",
    "parallel_anchors",
    "ratio_at_level",
    "ppo_loss",
    "reinforce_loss",
    "rollback_anchors",
    "segment_count",
    "segment_mean",
    "segment_sum",
    "sft_loss",
    "success_rates",
    "terminal_chunk_rewards",
    "token_mismatch_mask",
]
