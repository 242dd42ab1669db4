"""Reading events back out of a run: every JSON-lines file under a directory whose records carry `turns` with
`events` (the trajectory format) or are events themselves. rock knows nothing of the trajectory type: it reads JSON."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}
STEP_FILE = re.compile(r"step_(\d+)")  # roll's trajectories/step_000007.jsonl (and .filtered.jsonl)


def step_of(file: Path) -> int | None:
    match = STEP_FILE.search(file.name)
    return int(match.group(1)) if match else None


def _command_of(event: dict[str, Any], commands: list[dict[str, Any]]) -> str:
    for record in commands:
        if record.get("id") == event.get("command_record") and record.get("sandbox") == event.get("sandbox"):
            return record.get("command", "")
    return ""


def iter_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Events with their origin: file, trajectory id, turn, and the command that caused them."""
    path = Path(path)
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        step = step_of(file)
        with file.open() as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
                if "category" in record and "rule" in record:
                    yield {**record, "file": str(file), "step": step}
                    continue
                for turn in record.get("turns") or []:
                    for event in turn.get("events") or []:
                        yield {**event, "file": str(file), "step": step, "trajectory": record.get("id"),
                               "task": record.get("task_id"), "turn": turn.get("index", event.get("turn")),
                               "command": _command_of(event, turn.get("commands") or [])}
                for event in record.get("events") or []:
                    yield {**event, "file": str(file), "step": step, "trajectory": record.get("id"),
                           "task": record.get("task_id")}


def select(events: Iterator[dict[str, Any]], category: str | None = None, min_severity: str | None = None,
           trajectory: str | None = None) -> list[dict[str, Any]]:
    floor = SEVERITY_ORDER.get(min_severity or "low", 0)
    return [e for e in events
            if (category is None or e.get("category", "").startswith(category))
            and SEVERITY_ORDER.get(e.get("severity", "low"), 0) >= floor
            and (trajectory is None or e.get("trajectory") == trajectory)]


def counts_by_step(events: list[dict[str, Any]]) -> tuple[list[int], list[str], dict[tuple[int, str], int]]:
    """(steps, categories, {(step, category): count}) over the events that came from a step's file."""
    counts: dict[tuple[int, str], int] = {}
    for event in events:
        if event.get("step") is not None:
            key = (event["step"], event["category"])
            counts[key] = counts.get(key, 0) + 1
    steps = sorted({step for step, _ in counts})
    categories = sorted({category for _, category in counts})
    return steps, categories, counts


def run_steps(path: str | Path) -> list[int]:
    """Every step that has a trajectories file under `path` (so steps with no event still get a row)."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted({s for s in (step_of(f) for f in path.rglob("*.jsonl")) if s is not None})
