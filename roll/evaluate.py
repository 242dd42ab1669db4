"""Held-out evaluation: run the agent with a policy on instances of the task family's eval split (never seen in
training), greedy by default, and count the solved ones.

`evaluate_with_engines` uses engines that already serve the policy (the RL driver evaluates its start and its result
this way); `evaluate_checkpoint` starts engines for any Hugging Face checkpoint (`roll eval`)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roll.config.schema import RootConfig
from roll.tasks.config import HELD_OUT
from roll.models.resolve import resolve_model_path


@dataclass
class EvalResult:
    label: str
    solved: int
    total: int
    mean_reward: float
    mean_turns: float
    policy_version: int | None = None
    filtered: int = 0
    seconds: float = 0.0
    per_task: dict[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.solved / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success_rate": self.success_rate}

    def line(self) -> str:
        return f"{self.label}: {self.solved}/{self.total} solved ({100 * self.success_rate:.1f}%)"


def eval_config(cfg: RootConfig) -> RootConfig:
    """The run's config turned into one batch of held-out episodes: every eval task once (x samples_per_task),
    sampled at the eval temperature, nothing generated ahead, no episode started from an expert prefix."""
    ev = cfg.eval
    split = ev.split or HELD_OUT[cfg.task.source]
    task = cfg.task.model_copy(update={"split": split, "num_tasks": ev.num_tasks, "seed": ev.seed,
                                       "shuffle": False})
    sampling = cfg.agent.sampling.model_copy(update={"temperature": ev.temperature})
    agent = cfg.agent.model_copy(update={"sampling": sampling})
    rollout = cfg.rollout.model_copy(update={"group_size": ev.samples_per_task, "groups_per_step": ev.num_tasks,
                                             "staleness": 0, "mode": "async", "progress": False,
                                             "resampling": type(cfg.rollout.resampling)()})
    return cfg.model_copy(update={"task": task, "agent": agent, "rollout": rollout})


@dataclass(frozen=True)
class PairedComparison:
    """Two policies on the same instances: how many each solved that the other did not, and the exact two-sided
    sign-test (McNemar) p-value of that split under "neither is better"."""
    fixed: int  # solved after, not before
    broken: int  # solved before, not after
    p_value: float

    def line(self, before: str = "the SFT start", after: str = "RL") -> str:
        beyond_noise = self.p_value < 0.05
        if self.fixed > self.broken:
            verdict = f"{after} beats {before}" if beyond_noise else f"{after} is ahead of {before}, within noise"
        elif self.fixed < self.broken:
            verdict = f"{after} is worse than {before}" if beyond_noise else \
                f"{after} is behind {before}, within noise"
        else:
            verdict = f"{after} ties {before}"
        counts = f"{self.fixed} instances fixed, {self.broken} broken"
        return f"{verdict}: {counts} (paired sign test p = {self.p_value:.2g})"


def paired_comparison(before: dict[str, float], after: dict[str, float]) -> PairedComparison:
    """Compare per-instance rewards (solved = reward >= 1) on the instances both evaluations ran."""
    from math import comb

    shared = before.keys() & after.keys()
    fixed = sum(before[k] < 1.0 <= after[k] for k in shared)
    broken = sum(after[k] < 1.0 <= before[k] for k in shared)
    n, k = fixed + broken, min(fixed, broken)
    p_value = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return PairedComparison(fixed, broken, p_value)


def evaluate_with_engines(cfg: RootConfig, engines: Any, model_path: str | Path, label: str,
                          policy_version: int | None = None, output: str | Path | None = None) -> EvalResult:
    """One batch of held-out episodes with the policy the engines serve; `output` gets the trajectories."""
    import time

    from roll.rollout.progress import progress_bar
    from roll.rollout.scheduler import RolloutScheduler
    from roll.tasks.dataset import load_tasks

    ecfg = eval_config(cfg)
    tasks = load_tasks(ecfg.task)
    started = time.monotonic()
    with progress_bar(f"eval {label}", total=len(tasks) * ecfg.eval.samples_per_task,
                      enabled=cfg.metrics.progress_bar) as bar:
        relaunched = 0

        def on_episode(result: Any) -> None:
            nonlocal relaunched
            if ecfg.rollout.filter.discards(result.status):
                relaunched += 1  # launched again (or its task dropped): not a finished evaluation episode
                bar.note(f"relaunched {relaunched}")
            else:
                bar.advance()

        scheduler = RolloutScheduler(ecfg.rollout, ecfg.agent, ecfg.sandbox, model_path, engines, tasks,
                                     seed=ecfg.eval.seed, shuffle=False, request_timeout=ecfg.engine.request_timeout,
                                     on_episode=on_episode)
        try:
            scheduler.start()
            batch = scheduler.collect(policy_version=policy_version)
        finally:
            scheduler.close()
    trajectories = batch.trajectories
    if output is not None:
        from roll.rollout.records import write_records

        Path(output).unlink(missing_ok=True)
        write_records(trajectories, output)
    rewards = [t.reward or 0.0 for t in trajectories]
    n = len(trajectories)
    return EvalResult(label=label, solved=sum(r >= 1.0 for r in rewards), total=n,
                      mean_reward=sum(rewards) / n if n else 0.0,
                      mean_turns=sum(len(t.turns) for t in trajectories) / n if n else 0.0,
                      policy_version=batch.policy_version, filtered=int(batch.stats.get("filtered", 0)),
                      seconds=time.monotonic() - started, per_task={t.task_id: t.reward or 0.0 for t in trajectories})


def evaluate_checkpoint(cfg: RootConfig, label: str | None = None, output: str | Path | None = None) -> EvalResult:
    """Start engines for cfg.model and evaluate it (Ray is started and stopped here unless already running);
    `output` gets the trajectories."""
    from roll.engines.actor import EngineGroup
    from roll.rollout.ray_setup import init_ray, shutdown_ray

    model_path = resolve_model_path(cfg.model)
    started = init_ray(cfg.ray)
    engines = None
    try:
        engines = EngineGroup.create(model_path, cfg.engine, dtype=cfg.model.dtype)
        return evaluate_with_engines(cfg, engines, model_path, label or str(model_path), output=output)
    finally:
        if engines is not None:
            engines.shutdown()
        shutdown_ray(started)


def save_results(path: str | Path, results: dict[str, EvalResult]) -> None:
    Path(path).write_text(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=1))


def comparison_table(results: dict[str, EvalResult]):
    from rich.table import Table

    table = Table(title="held-out evaluation")
    for column in ("policy", "solved", "total", "success rate", "mean reward", "mean turns"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for result in results.values():
        table.add_row(result.label, str(result.solved), str(result.total), f"{100 * result.success_rate:.1f}%",
                      f"{result.mean_reward:.3f}", f"{result.mean_turns:.2f}")
    return table
