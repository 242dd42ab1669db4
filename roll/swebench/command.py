"""`roll eval swebench`: evaluate predictions (a file, or `gold`) or a model checkpoint (the iFlow agent with a vLLM
engine, in each instance's sandbox) on a SWE-bench dataset; k runs per instance, Pass@1 = mean resolved rate."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from roll.swebench.constants import DEFAULT_LOG_ROOT, DEFAULT_NAMESPACE, PAPER_SAMPLING
from roll.swebench.dataset import SWEInstance, load_instances
from roll.swebench.evaluate import EvaluationRun, evaluate_predictions
from roll.swebench.local.catalog import DATASET_FILE, resolve_dataset
from roll.swebench.predictions import GOLD, PredictionError, load_predictions, read_predictions
from roll.swebench.report import average_report, resolved_rate
from roll.swebench.runner import HarnessSettings
from roll.swebench.specs import ImagePolicy


class CommandError(ValueError):
    pass


@dataclass
class SWEBenchOptions:
    dataset: str
    run_id: str
    predictions: str | None = None
    model: str | None = None
    model_name: str | None = None
    split: str = "test"
    instance_ids: list[str] = field(default_factory=list)
    workers: int = 1
    timeout: float = 1800.0
    k: int = 1
    temperature: float = PAPER_SAMPLING["temperature"]
    top_p: float = PAPER_SAMPLING["top_p"]
    top_k: int = PAPER_SAMPLING["top_k"]
    log_root: Path = DEFAULT_LOG_ROOT
    report_dir: Path = Path(".")
    namespace: str | None = DEFAULT_NAMESPACE
    image_template: str | None = None
    memory: str = "8g"
    cpus: float = 2.0
    network: str = "none"
    build_local_images: bool = False
    agent_overrides: list[str] = field(default_factory=list)
    show_progress: bool = True

    def run_ids(self) -> list[str]:
        return [self.run_id] if self.k == 1 else [f"{self.run_id}.run{r}" for r in range(1, self.k + 1)]

    def images(self) -> ImagePolicy:
        namespace = self.namespace
        if namespace is not None and namespace.lower() in ("", "none", "local"):
            namespace = None
        return ImagePolicy(namespace=namespace, template=self.image_template)

    def settings(self, run_id: str) -> HarnessSettings:
        return HarnessSettings(run_id=run_id, log_root=Path(self.log_root), timeout=self.timeout,
                               images=self.images(), memory=self.memory, cpus=self.cpus, network_mode=self.network)


def check_options(options: SWEBenchOptions) -> None:
    if (options.predictions is None) == (options.model is None):
        raise CommandError("give exactly one of --predictions (a file, or `gold`) and --model (a checkpoint)")
    if options.k < 1:
        raise CommandError("--k must be at least 1")
    if options.workers < 1:
        raise CommandError("--workers must be at least 1")
    if not options.run_id or "/" in options.run_id:
        raise CommandError("--run-id must be a non-empty name without '/'")


def maybe_build_local(instances: list[SWEInstance], dataset: str, options: SWEBenchOptions, console: Console) -> None:
    if not options.build_local_images:
        return
    if Path(dataset).resolve() != DATASET_FILE.resolve():
        raise CommandError("--build-local-images only applies to the local set (--dataset local)")
    from roll.swebench.local.images import build_images

    with console.status("building local-set images (cached by tag)"):
        build_images(instances, log=lambda message: console.print(f"  {message}"))


def results_table(runs: list[EvaluationRun], average: dict[str, Any] | None) -> Table:
    table = Table(title="SWE-bench")
    for column in ("run", "total", "resolved", "unresolved", "empty", "errors", "resolved %", "s"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in runs:
        r = run.report
        table.add_row(run.run_id, str(r["total_instances"]), str(r["resolved_instances"]),
                      str(r["unresolved_instances"]), str(r["empty_patch_instances"]), str(r["error_instances"]),
                      f"{100 * resolved_rate(r):.1f}", f"{run.seconds:.0f}")
    if average is not None:
        table.add_row(f"Pass@1 (mean of {average['k']})", "", "", "", "", "", f"{100 * average['pass_at_1']:.1f}",
                      "")
    return table


def run_swebench(options: SWEBenchOptions, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    check_options(options)
    dataset = resolve_dataset(options.dataset)
    instances = load_instances(dataset, options.split, options.instance_ids or None)
    if not instances:
        raise CommandError(f"{dataset} has no instances")
    maybe_build_local(instances, dataset, options, console)
    run_ids = options.run_ids()
    if options.predictions is not None:
        everything = instances if not options.instance_ids else load_instances(dataset, options.split)
        try:
            predictions = load_predictions(options.predictions, everything)
        except PredictionError as exc:
            raise CommandError(str(exc)) from None
        if options.predictions != GOLD:
            unknown = {p.instance_id for p in read_predictions(options.predictions)} - {
                i.instance_id for i in everything}
            if unknown:
                raise CommandError(f"predictions for instances not in {dataset}: {', '.join(sorted(unknown))}")
        # as the official harness: every prediction counts as submitted; only the selected instances run
        per_run = {rid: list(predictions) for rid in run_ids}
    else:
        from roll.swebench.agent_eval import agent_predictions

        per_run = agent_predictions(instances, run_ids, options, console)
    runs = []
    for rid in run_ids:
        runs.append(evaluate_predictions(instances, per_run[rid], options.settings(rid), options.workers,
                                         Path(options.report_dir), dataset, console, options.show_progress))
    average = average_report([r.report for r in runs], run_ids) if options.k > 1 else None
    if average is not None:
        model = (per_run[run_ids[0]][0].model_name_or_path if per_run[run_ids[0]] else "none").replace("/", "__")
        path = Path(options.report_dir) / f"{model}.{options.run_id}.avg@{options.k}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(average, indent=2) + "\n")
        average["path"] = str(path)
    console.print(results_table(runs, average))
    return {"runs": [{"run_id": r.run_id, "report": r.report, "report_path": str(r.report_path)} for r in runs],
            "average": average,
            "pass_at_1": average["pass_at_1"] if average else resolved_rate(runs[0].report)}
