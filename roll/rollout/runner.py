"""`roll rollout`: build engines, env workers and the scheduler from a validated config, collect `num_steps`
batches, write the trajectories as JSON lines in the run directory, print a progress bar and a summary.

Files in the run directory: config.yaml (the resolved config), trajectories.jsonl (kept episodes),
filtered.jsonl (discarded episodes, for inspection), summary.json."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from roll.config.loader import prepare_run_dir
from roll.config.schema import RootConfig
from roll.engines.actor import EngineGroup
from roll.rollout.progress import progress_bar
from roll.rollout.ray_setup import init_ray, shutdown_ray
from roll.rollout.records import write_records
from roll.rollout.scheduler import RolloutScheduler
from roll.models.resolve import resolve_model_path
from roll.tasks.dataset import load_tasks

SUMMARY_KEYS = ("episodes", "success_rate", "mean_reward", "mean_turns", "completion_tokens", "tokens_per_s",
                "episodes_per_s", "filtered", "replaced", "dropped_groups", "stale_dropped", "hung", "seconds")


def merge_stats(steps: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    episodes = sum(s["episodes"] for s in steps)
    tokens = sum(s["completion_tokens"] for s in steps)
    weighted = lambda key: sum(s[key] * s["episodes"] for s in steps) / episodes if episodes else 0.0  # noqa: E731
    filtered_by_kind: dict[str, int] = {}
    for s in steps:
        for kind, count in s["filtered_by_kind"].items():
            filtered_by_kind[kind] = filtered_by_kind.get(kind, 0) + count
    return {"steps": len(steps), "episodes": episodes, "success_rate": weighted("success_rate"),
            "mean_reward": weighted("mean_reward"), "mean_turns": weighted("mean_turns"),
            "completion_tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds else 0.0, "episodes_per_s": episodes / seconds if seconds else 0.0,
            "filtered": sum(s["filtered"] for s in steps), "filtered_by_kind": filtered_by_kind,
            **{key: sum(s[key] for s in steps) for key in ("replaced", "dropped_groups", "stale_dropped",
                                                           "stale_recomputed", "hung", "cancelled", "episodes_run")}}


def summary_table(summary: dict[str, Any], title: str = "rollout summary") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    return table


def run_rollout(cfg: RootConfig, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    run_dir = prepare_run_dir(cfg)
    console.print(f"[bold]run directory[/bold] {run_dir}")
    model_path = resolve_model_path(cfg.model)
    tasks = load_tasks(cfg.task)
    started_ray = init_ray(cfg.ray)
    engines = scheduler = None
    output, filtered = run_dir / cfg.rollout.output, run_dir / "filtered.jsonl"
    steps: list[dict[str, Any]] = []
    try:
        with console.status(f"starting {cfg.engine.num_engines} {cfg.engine.backend} engine(s) and "
                            f"{cfg.rollout.num_env_workers} env worker(s)"):
            engines = EngineGroup.create(model_path, cfg.engine, dtype=cfg.model.dtype)
            total = cfg.rollout.num_steps * cfg.rollout.groups_per_step * cfg.rollout.group_size
        with progress_bar("rollout", total=total, enabled=cfg.rollout.progress, console=console) as bar:
            counts = {"ok": 0, "solved": 0, "filtered": 0}

            def on_episode(result: Any) -> None:
                if cfg.rollout.filter.discards(result.status):
                    counts["filtered"] += 1
                else:
                    counts["ok"] += 1
                    counts["solved"] += int((result.trajectory.reward or 0.0) >= 1.0)
                    bar.advance()
                bar.note(f"solved {counts['solved']}/{counts['ok']}  filtered {counts['filtered']}")

            scheduler = RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, model_path, engines, tasks,
                                         seed=cfg.run.seed, shuffle=cfg.task.shuffle,
                                         request_timeout=cfg.engine.request_timeout, on_episode=on_episode)
            scheduler.start()
            began = time.monotonic()
            for _ in range(cfg.rollout.num_steps):
                batch = scheduler.collect(policy_version=engines.policy_version())
                write_records(batch.trajectories, output)
                if batch.discarded:
                    write_records(batch.discarded, filtered)
                steps.append(batch.stats)
            seconds = time.monotonic() - began
    finally:
        if scheduler is not None:
            scheduler.close()
        if engines is not None:
            engines.shutdown()
        shutdown_ray(started_ray)
    summary = {**merge_stats(steps, seconds), "run_dir": str(run_dir), "trajectories": str(output)}
    (Path(run_dir) / "summary.json").write_text(json.dumps({"summary": summary, "steps": steps}, indent=1))
    console.print(summary_table(summary))
    return summary
