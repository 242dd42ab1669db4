"""The run summary, with the official report's keys (schema_version 2) and id lists, written as
`<report_dir>/<model>.<run_id>.json`; and the mean over k runs (the paper's Avg@k, reported as Pass@1)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from roll.swebench.constants import LOG_INSTANCE, LOG_REPORT, LOG_TEST_OUTPUT
from roll.swebench.dataset import SWEInstance
from roll.swebench.infra import TIER_ENVIRONMENT, classify_files
from roll.swebench.predictions import Prediction


def _docker_leftovers(run_id: str, instances: Iterable[SWEInstance], images: dict[str, str]) -> dict[str, Any]:
    from rock.engine import client as docker_client

    client = docker_client()
    rows = client.api.containers(all=True, filters={"label": f"swebench.run_id={run_id}"})  # no per-container inspect
    containers = sorted(name.lstrip("/") for row in rows for name in row.get("Names", [])[:1])
    present = {tag for image in client.images.list() for tag in image.tags}
    unremoved = sorted({images[i.instance_id] for i in instances if images.get(i.instance_id) in present})
    return {"unstopped_instances": len(containers), "unstopped_containers": containers, "unremoved_images": unremoved}


def run_report(predictions: dict[str, Prediction], instances: list[SWEInstance], run_id: str, log_root: Path,
               report_dir: Path | None = None, images: dict[str, str] | None = None,
               check_docker: bool = True) -> tuple[dict[str, Any], Path | None]:
    completed, resolved, unresolved, errors, incomplete, empty = set(), set(), set(), set(), set(), set()
    for instance in instances:
        iid = instance.instance_id
        prediction = predictions.get(iid)
        if prediction is None:
            incomplete.add(iid)
            continue
        if prediction.model_patch in ("", None):
            empty.add(iid)
            continue
        path = log_root / run_id / prediction.model_name_or_path.replace("/", "__") / iid / LOG_REPORT
        if not path.exists():
            errors.add(iid)
            continue
        completed.add(iid)
        try:
            text = path.read_text().strip()
            report = json.loads(text) if text else None
            if report is None:
                errors.add(iid)
            elif report[iid]["resolved"]:
                resolved.add(iid)
            else:
                unresolved.add(iid)
        except (json.JSONDecodeError, KeyError):
            errors.add(iid)
    infra, ambiguous, reasons = set(), set(), {}
    for iid in unresolved | errors:
        folder = log_root / run_id / predictions[iid].model_name_or_path.replace("/", "__") / iid
        classification = classify_files(folder / LOG_TEST_OUTPUT, folder / LOG_INSTANCE)
        if classification:
            reasons[iid] = classification[0]
            (infra if classification[1] == TIER_ENVIRONMENT else ambiguous).add(iid)
    report = {
        "total_instances": len(instances),
        "submitted_instances": len(predictions),
        "completed_instances": len(completed),
        "resolved_instances": len(resolved),
        "unresolved_instances": len(unresolved),
        "infra_failure_instances": len(infra),
        "ambiguous_failure_instances": len(ambiguous),
        "empty_patch_instances": len(empty),
        "error_instances": len(errors),
        "completed_ids": sorted(completed),
        "incomplete_ids": sorted(incomplete),
        "empty_patch_ids": sorted(empty),
        "submitted_ids": sorted(predictions),
        "resolved_ids": sorted(resolved),
        "unresolved_ids": sorted(unresolved),
        "infra_failure_ids": sorted(infra),
        "ambiguous_failure_ids": sorted(ambiguous),
        "failure_reasons": dict(sorted(reasons.items())),
        "error_ids": sorted(errors),
        "schema_version": 2,
    }
    if check_docker:
        from rock.engine import EngineUnavailable

        try:
            report.update(_docker_leftovers(run_id, instances, images or {}))
        except EngineUnavailable:
            pass  # as the official report does without a Docker client
    path = None
    if report_dir is not None:
        model = next(iter(predictions.values())).model_name_or_path if predictions else "none"
        path = Path(report_dir) / f"{model.replace('/', '__')}.{run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=4) + "\n")
    return report, path


def resolved_rate(report: dict[str, Any]) -> float:
    total = report["total_instances"]
    return report["resolved_instances"] / total if total else 0.0


def average_report(reports: list[dict[str, Any]], run_ids: list[str]) -> dict[str, Any]:
    """Pass@1 as the mean resolved rate over k runs (the paper's Avg@k), with each run's rate and the per-instance
    resolve counts."""
    rates = [resolved_rate(r) for r in reports]
    counts: dict[str, int] = {}
    for report in reports:
        for iid in report["resolved_ids"]:
            counts[iid] = counts.get(iid, 0) + 1
    return {"k": len(reports), "pass_at_1": sum(rates) / len(rates) if rates else 0.0, "run_ids": run_ids,
            "resolved_rate_per_run": rates, "resolved_runs_per_instance": dict(sorted(counts.items())),
            "total_instances": reports[0]["total_instances"] if reports else 0}
