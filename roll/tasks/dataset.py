"""Task datasets: JSON-lines files of `TaskRecord`s, or the embedded procedural family, chosen by the task config."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from roll.tasks import relay, secret_word, shortcut
from roll.tasks.config import TaskConfig
from roll.tasks.schema import TaskRecord


class TaskFileError(ValueError):
    pass


def read_tasks(path: str | Path) -> list[TaskRecord]:
    """Every record of a JSON-lines task file; a bad line is an error naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"task file not found: {path}")
    tasks, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = TaskRecord.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise TaskFileError(f"{path}:{number}: not JSON ({exc.msg})") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<record>"
            raise TaskFileError(f"{path}:{number}: {where}: {first['msg']}") from None
        if task.id in seen:
            raise TaskFileError(f"{path}:{number}: duplicate task id {task.id!r}")
        seen.add(task.id)
        tasks.append(task)
    return tasks


def write_tasks(tasks: Iterable[TaskRecord], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(task.model_dump_json() + "\n" for task in tasks))
    return path


def load_tasks(cfg: TaskConfig) -> list[TaskRecord]:
    """The tasks a run uses. The embedded family generates `num_tasks` instances of `split` for `seed`."""
    if cfg.source in ("secret_word", "relay", "shortcut"):
        family = {"relay": relay, "shortcut": shortcut}.get(cfg.source, secret_word)
        return list(family.generate(cfg.num_tasks or 64, seed=cfg.seed, split=cfg.split, options=cfg.options))
    tasks = read_tasks(cfg.path or "")
    tasks = [t for t in tasks if t.metadata.get("split", cfg.split) == cfg.split] or tasks
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(tasks)
    return tasks[: cfg.num_tasks] if cfg.num_tasks else tasks
