"""Evaluate a set of predictions: every instance with a non-empty patch and no report yet runs in its own fresh
container, `workers` at a time, under a progress bar; then the summary report is written. Re-running with the same
run id skips finished instances."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from roll.swebench.constants import LOG_REPORT, LOG_RUN_METADATA
from roll.swebench.dataset import SWEInstance
from roll.swebench.predictions import Prediction
from roll.swebench.report import run_report
from roll.swebench.runner import HarnessSettings, InstanceResult, run_instance
from roll.swebench.specs import SpecError


@dataclass
class EvaluationRun:
    run_id: str
    report: dict[str, Any]
    report_path: Path | None
    results: list[InstanceResult]
    seconds: float


def progress_bar(console: Console | None = None, disable: bool = False) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console, disable=disable)


def pending(instances: list[SWEInstance], predictions: dict[str, Prediction],
            settings: HarnessSettings) -> list[SWEInstance]:
    """Instances that have a non-empty prediction and no report.json in this run yet."""
    todo = []
    for instance in instances:
        prediction = predictions.get(instance.instance_id)
        if prediction is None or not prediction.model_patch:
            continue
        if (settings.log_dir(prediction.model_name_or_path, instance.instance_id) / LOG_REPORT).exists():
            continue
        todo.append(instance)
    return todo


def write_run_metadata(settings: HarnessSettings, dataset: str, extra: dict[str, Any] | None = None) -> Path:
    path = settings.log_root / settings.run_id / LOG_RUN_METADATA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": dataset, "created_at": datetime.now(timezone.utc).isoformat(
        timespec="seconds"), **(extra or {})}, indent=2) + "\n")
    return path


def evaluate_predictions(instances: list[SWEInstance], predictions: list[Prediction], settings: HarnessSettings,
                         workers: int = 1, report_dir: Path | None = Path("."), dataset: str = "",
                         console: Console | None = None, show_progress: bool = True,
                         runner: Callable[[SWEInstance, Prediction, HarnessSettings], InstanceResult] = run_instance,
                         ) -> EvaluationRun:
    started = time.monotonic()
    console = console or Console(stderr=True)
    by_id = {p.instance_id: p for p in predictions}
    write_run_metadata(settings, dataset)
    todo = pending(instances, by_id, settings)
    skipped = sum(1 for i in instances if by_id.get(i.instance_id) and by_id[i.instance_id].model_patch) - len(todo)
    if skipped:
        console.print(f"{skipped} instance(s) already evaluated in run {settings.run_id}: skipped")
    results: list[InstanceResult] = []
    counts = {"resolved": 0, "unresolved": 0, "error": 0}
    with progress_bar(console, disable=not show_progress) as progress:
        task = progress.add_task(f"SWE-bench {settings.run_id}", total=len(todo), status="")
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {pool.submit(runner, i, by_id[i.instance_id], settings): i for i in todo}
            for future in as_completed(futures):
                instance = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - a runner bug must not lose the other instances
                    result = InstanceResult(instance.instance_id, "error", Path("."), error=f"{type(exc).__name__}: "
                                            f"{exc}")
                results.append(result)
                counts[result.outcome if result.outcome in counts else "unresolved"] += 1
                if result.outcome == "error":
                    console.print(f"[red]error[/red] {result.instance_id}: {(result.error or '').splitlines()[0]}")
                progress.update(task, advance=1, status=f"resolved {counts['resolved']}  unresolved "
                                                        f"{counts['unresolved']}  errors {counts['error']}")
    images = {}
    for instance in instances:
        try:
            images[instance.instance_id] = settings.images.image_for(instance)
        except SpecError:
            pass
    report, path = run_report(by_id, instances, settings.run_id, settings.log_root, report_dir, images)
    return EvaluationRun(settings.run_id, report, path, results, time.monotonic() - started)
