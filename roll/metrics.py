"""Per-step metrics: always a JSON-lines file in the run directory, plus wandb (offline by default) and, optionally,
tensorboard; and a rich progress bar with ETA.

Each line of `metrics.jsonl` is one step: {"step": n, "time": unix, ...flat metrics}. Lines are flushed and fsynced
as they are written, so a killed run keeps every finished step. On resume, lines after the resumed step are dropped
(those steps run again)."""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rock.telemetry.events import CATEGORIES
from roll.config.training import MetricsConfig

SAFETY_OUTCOMES = ("dropped", "terminated", "blind", "stopped_commands")


def safety_panel(trajectories: Iterable[Any]) -> dict[str, int]:
    """The step's `safety/` section: events by category and what was done about them, every key present (0 when
    nothing happened) so that the dashboards' plots are continuous from the first step."""
    panel = {f"safety/{name}": 0 for name in (*CATEGORIES, *SAFETY_OUTCOMES)}
    for trajectory in trajectories:
        safety = trajectory.metadata.get("safety", {})
        for category, count in safety.get("counts", {}).items():
            panel[f"safety/{category}"] = panel.get(f"safety/{category}", 0) + count
        panel["safety/dropped"] += int(bool(safety.get("drop")))
        panel["safety/terminated"] += int(trajectory.outcome == "terminated")
        panel["safety/blind"] += int(bool(safety.get("blind")))
        panel["safety/stopped_commands"] += sum(bool(e.get("detail", {}).get("stopped_command"))
                                                for e in trajectory.all_events())
    return panel


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash mid-write
            break
    return rows


class MetricsLogger:
    def __init__(self, run_dir: str | Path, cfg: MetricsConfig, config: dict[str, Any] | None = None,
                 name: str | None = None, resume_step: int | None = None, filename: str = "metrics.jsonl"):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / filename
        if resume_step is not None:
            kept = [row for row in read_jsonl(self.path) if row.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self._file = self.path.open("a")
        self._wandb = None
        self._tb = None
        if cfg.wandb != "disabled":
            self._wandb = self._start_wandb(cfg, config, name or self.run_dir.name)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _start_wandb(self, cfg: MetricsConfig, config: dict[str, Any] | None, name: str):
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        return wandb.init(project=cfg.wandb_project, entity=cfg.wandb_entity, name=name, dir=str(self.run_dir),
                          mode=cfg.wandb, config=config or {}, resume="allow", id=_wandb_id(self.run_dir),
                          settings=wandb.Settings(console="off", x_disable_stats=True))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, "time": time.time(), **{k: _clean(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        numeric = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in ("step", "time")}
        if self._wandb is not None:
            self._wandb.log(numeric, step=step)
        if self._tb is not None:
            for key, value in numeric.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def summary(self, values: dict[str, Any]) -> None:
        if self._wandb is not None:
            self._wandb.summary.update({k: _clean(v) for k, v in values.items()})

    def close(self) -> None:
        self._file.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._tb is not None:
            self._tb.close()


def _wandb_id(run_dir: Path) -> str:
    """One wandb run per run directory (stable across resumes)."""
    marker = run_dir / ".wandb_id"
    if not marker.is_file():
        import uuid

        marker.write_text(uuid.uuid4().hex[:12])
    return marker.read_text().strip()


def headline(metrics: dict[str, Any] | None, fields: Iterable[str]) -> str:
    """`key=value` (3 significant digits) for each of `fields` that has a number in `metrics`."""
    return "  ".join(f"{k}={metrics[k]:.3g}" for k in fields if metrics and isinstance(metrics.get(k), (int, float)))


class Progress:
    """A rich progress bar with ETA over `total` steps, showing a few headline metrics; a no-op when disabled."""

    def __init__(self, total: int, description: str, enabled: bool = True, start: int = 0,
                 fields: Iterable[str] = ("reward_mean", "success_rate", "loss"), console: Any = None):
        self.fields = tuple(fields)
        self._progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                          TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                          TextColumn("{task.fields[info]}"), transient=False,
                                          console=console)
            self._task = self._progress.add_task(description, total=total, completed=start, info="")
            self._progress.start()

    def update(self, metrics: dict[str, Any] | None = None, advance: int = 1) -> None:
        if self._progress is None:
            return
        self._progress.update(self._task, advance=advance, info=headline(metrics, self.fields))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
