"""One entry point for the trainer: `compute_loss(algorithm, inputs, **params)`."""

from __future__ import annotations

from ipa.baselines import grpo_loss, gspo_loss, ppo_loss, reinforce_loss
from ipa.ipa_loss import ipa_loss
from ipa.types import LossInputs, LossOutput

ALGORITHMS: tuple[str, ...] = ("ipa", "grpo", "gspo", "ppo", "reinforce")

_COMMON = ("agg", "global_denominator", "norm_length", "kl_coef", "entropy_coef")
_MISMATCH = ("mismatch_high", "mismatch_low")
_CLIP = ("clip_eps", "clip_eps_high")
_BEHAVIOUR = ("behaviour_cap",)  # the truncated π_old/μ weight of the decoupled objective (reinforce uses μ itself)

# The keyword parameters each algorithm accepts; anything else is a ValueError (a typo must not pass silently).
ALGORITHM_PARAMS: dict[str, tuple[str, ...]] = {
    "ipa": _COMMON + _MISMATCH + _BEHAVIOUR + ("gamma", "ratio_level"),
    "grpo": _COMMON + _MISMATCH + _CLIP + _BEHAVIOUR + ("norm_adv_by_std",),
    "gspo": _COMMON + _CLIP + _BEHAVIOUR + ("norm_adv_by_std",),
    "ppo": _COMMON + _MISMATCH + _CLIP + _BEHAVIOUR,
    "reinforce": _COMMON + _MISMATCH + ("is_cap", "baseline"),
}


def compute_loss(algorithm: str, inputs: LossInputs, **params) -> LossOutput:
    """The loss of `algorithm` (one of ALGORITHMS) on `inputs`; `params` override the function's defaults.

    ipa -> ipa_loss (Eq. 7-9), grpo -> grpo_loss, gspo -> gspo_loss, ppo -> ppo_loss (needs inputs.advantages),
    reinforce -> reinforce_loss (Eq. 4-5). Raises ValueError naming an unknown algorithm or parameter.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    unknown = sorted(set(params) - set(ALGORITHM_PARAMS[algorithm]))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for algorithm {algorithm!r}; accepted: {ALGORITHM_PARAMS[algorithm]}"
        )
    x = inputs
    extras = {"ref_logp": x.ref_logp, "entropy": x.entropy, "trajectory_ids": x.trajectory_ids}
    if algorithm == "ipa":
        return ipa_loss(
            x.logp, x.old_logp, x.engine_logp, x.assistant_mask, x.chunk_ids, x.rewards,
            chunk_rewards=x.chunk_rewards, trajectory_chunks=x.trajectory_chunks, **extras, **params,
        )  # fmt: skip
    if algorithm == "grpo":
        return grpo_loss(
            x.logp, x.old_logp, x.assistant_mask, x.rewards, x.group_ids, engine_logp=x.engine_logp, **extras, **params
        )
    if algorithm == "gspo":
        return gspo_loss(
            x.logp, x.old_logp, x.assistant_mask, x.rewards, x.group_ids, engine_logp=x.engine_logp, **extras, **params
        )
    if algorithm == "ppo":
        if x.advantages is None:
            raise ValueError("algorithm 'ppo' needs inputs.advantages")
        return ppo_loss(
            x.logp, x.old_logp, x.assistant_mask, x.advantages, engine_logp=x.engine_logp, **extras, **params
        )
    return reinforce_loss(
        x.logp, x.engine_logp, x.assistant_mask, x.rewards, x.group_ids, old_logp=x.old_logp, **extras, **params
    )
