"""The policy-update phase of an RL step, driver side: plan the batch for the chosen `ipa` loss, fill in old and
reference log-probs, then run one optimizer step per mini-batch (per epoch) on the trainer group.

What depends on the algorithm is only bookkeeping around `ipa.compute_loss`:
- the aggregation mode (a loss parameter, defaulting to the loss function's own default) fixes the global
  denominator each micro-batch loss is divided by;
- losses that normalise rewards within a group (grpo, gspo, reinforce with a baseline) see whole groups, so groups
  are never split across micro-batches;
- ppo takes given advantages: the group-relative ones of `ipa.group_advantages`, computed over the whole batch."""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

import ipa
from roll.config.errors import ConfigError
from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.trainer.batch import MicroBatch, Sample, flatten, plan
from roll.trainer.metric_reduction import reduce_values

LOSS_FUNCTIONS = {"ipa": ipa.ipa_loss, "grpo": ipa.grpo_loss, "gspo": ipa.gspo_loss, "ppo": ipa.ppo_loss,
                  "reinforce": ipa.reinforce_loss}

Plan = list[list[list[MicroBatch]]]  # [mini-batch][rank][micro-batch]


class LogprobSource(Protocol):
    def compute_logprobs(self, plan: Plan) -> list[list[list[torch.Tensor]]]: ...


def loss_default(algorithm: str, name: str) -> Any:
    return inspect.signature(LOSS_FUNCTIONS[algorithm]).parameters[name].default


def aggregation(algo: AlgorithmConfig) -> str:
    return algo.params.get("agg") or loss_default(algo.name, "agg")


def groups_inside_loss(algo: AlgorithmConfig) -> bool:
    """Whether the loss normalises rewards over the group it sees (so a group must stay in one micro-batch)."""
    if algo.name in ("grpo", "gspo"):
        return True
    if algo.name == "reinforce":
        return (algo.params.get("baseline") or loss_default("reinforce", "baseline")) != "none"
    return False


def loss_params(algo: AlgorithmConfig) -> dict[str, Any]:
    params = dict(algo.params)
    if algo.kl_coef:
        params["kl_coef"] = algo.kl_coef
    unknown = sorted(set(params) - set(ipa.ALGORITHM_PARAMS[algo.name]) - {"global_denominator"})
    if unknown:
        raise ValueError(f"algorithm.params: unknown parameter(s) {unknown} for {algo.name!r}; "
                         f"accepted: {ipa.ALGORITHM_PARAMS[algo.name]}")
    if "global_denominator" in params:
        raise ValueError("algorithm.params.global_denominator is computed by the trainer; remove it")
    return params


def scoring_temperature(sampling: Any) -> float:
    """The temperature the trainer scores the policy at: the one the engines sampled with (they record log-probs of
    softmax(logits / T), vLLM's processed_logprobs). Sampling the trainer cannot reproduce is refused, naming the
    key: top-p / top-k truncation (the sampled distribution is renormalised over a per-step support) and greedy
    decoding (no distribution to correct for)."""
    if sampling.top_p < 1.0:
        raise ConfigError(f"agent.sampling.top_p: {sampling.top_p} truncates the sampled distribution, which the "
                          f"trainer does not score; RL needs top_p=1.0")
    if sampling.top_k > 0:
        raise ConfigError(f"agent.sampling.top_k: {sampling.top_k} truncates the sampled distribution, which the "
                          f"trainer does not score; RL needs top_k=-1")
    if sampling.temperature <= 0:
        raise ConfigError(f"agent.sampling.temperature: {sampling.temperature} is greedy decoding; RL samples "
                          f"(temperature > 0)")
    return float(sampling.temperature)


@dataclass
class UpdatePlan:
    plan: Plan
    denominators: list[float]  # one per mini-batch: the global denominator of its aggregation
    samples: Sequence[Sample]
    prefix_tokens: list[float] = field(default_factory=list)  # per mini-batch: replayed expert tokens (Eq. 10's IL)


def prepare(samples: Sequence[Sample], algo: AlgorithmConfig, trainer: TrainerConfig, pad_id: int,
            temperature: float = 1.0) -> UpdatePlan:
    """The micro-batch plan, its global denominators and (ppo) advantages. `temperature` is the sampling
    temperature (`scoring_temperature`): every log-prob of the update (old, reference, current) is taken at it."""
    result = plan(samples, pad_id=pad_id, max_tokens=trainer.max_tokens_per_microbatch, world_size=trainer.world_size,
                  mini_batches=trainer.mini_batches, keep_groups=groups_inside_loss(algo))
    for mb in flatten(result):
        mb.temperature = float(temperature)
    agg = aggregation(algo)
    # A forked trajectory's pieces share a micro-batch (batch.group_units), so each counts it once here too.
    denominators = [float(sum(ipa.local_denominator(mb.loss_mask, agg, mb.trajectory_ids)
                              for rank in mini for mb in rank)) for mini in result]
    if algo.name == "ppo":
        rewards = torch.tensor([s.reward for s in samples], dtype=torch.float32)
        groups = torch.tensor([s.group for s in samples], dtype=torch.long)
        trajectories = torch.tensor([s.trajectory for s in samples], dtype=torch.long)
        norm = algo.params.get("norm_adv_by_std", True)
        advantages = ipa.group_advantages(rewards, groups, norm_by_std=norm, trajectory_ids=trajectories)
        for mini in result:
            for rank in mini:
                for mb in rank:
                    mb.advantages = torch.where(mb.sample_index >= 0, advantages[mb.sample_index.clamp(min=0)], 0.0)
    prefix_tokens = [float(sum(int(mb.prefix_mask.sum()) for rank in mini for mb in rank if mb.prefix_mask is not None))
                     for mini in result]
    return UpdatePlan(result, denominators, samples, prefix_tokens)


def attach(update: UpdatePlan, logprobs: list[list[list[torch.Tensor]]], field: str) -> None:
    """Store per-micro-batch log-probs (as returned by `compute_logprobs`) on the plan's micro-batches."""
    for mini, mini_lp in zip(update.plan, logprobs):
        for rank, rank_lp in zip(mini, mini_lp):
            for mb, lp in zip(rank, rank_lp):
                setattr(mb, field, lp)


def mismatch_stats(update: UpdatePlan) -> dict[str, float]:
    """How far the trainer's old log-probs are from the engine's on the trained tokens (both of the same policy)."""
    diffs = [(mb.old_logp - mb.engine_logp)[mb.loss_mask] for mini in update.plan for rank in mini for mb in rank
             if mb.old_logp is not None]
    if not diffs or not sum(d.numel() for d in diffs):
        return {}
    d = torch.cat(diffs).abs()
    return {"logp_mismatch_mean": float(d.mean()), "logp_mismatch_max": float(d.max())}


def run_update(group: Any, update: UpdatePlan, algo: AlgorithmConfig, epochs: int = 1) -> dict[str, float]:
    """One optimizer step per mini-batch and epoch; metrics averaged over them (loss, ratios, grad norm, ...)."""
    params = loss_params(algo)
    with_entropy = bool(params.get("entropy_coef"))
    results = []
    for _ in range(epochs):
        for i, (mini, denominator) in enumerate(zip(update.plan, update.denominators)):
            prefix = update.prefix_tokens[i] if i < len(update.prefix_tokens) else 0.0
            imitation = (algo.prefix_il_coef, prefix) if algo.prefix_il_coef > 0 and prefix > 0 else None
            results.append(group.train_step(mini, algo.name, params, denominator, with_entropy, imitation))
    merged: dict[str, float] = {}
    reductions = getattr(group, "metric_reductions", {})
    for key in results[0]:
        values = [r[key] for r in results if key in r]
        merged[key] = reduce_values(reductions.get(key, "mean"), values)
    if any("train_peak_rss_gb" in r for r in results):
        merged["train_peak_rss_gb"] = max(r.get("train_peak_rss_gb", 0.0) for r in results)
    merged["optimizer_steps"] = float(len(results))
    merged["train_tokens"] = float(sum(r["train_tokens"] for r in results))
    return merged
