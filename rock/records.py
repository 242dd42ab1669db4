"""Structured records of what happened in a sandbox. The seed of security telemetry: a command record carries
free-form `tags` (e.g. the agent turn that issued it) and an `events` list that tracers append to."""
from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import BaseModel, Field


class CommandResult(BaseModel):
    """What `Sandbox.run` returns."""

    output: str
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0
    truncated_bytes: int = 0
    oom_killed: bool = False
    pids_limit_hit: bool = False
    session_restarted: bool = False
    record_id: int = -1

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class SandboxDeath(BaseModel):
    """The container stopped while the sandbox was in use (nothing the agent can do should cause this)."""

    detected_at: float = Field(default_factory=time.time)
    status: str = Field(description="the container's state: exited, dead, removed, ...")
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""


class CommandRecord(BaseModel):
    """One command run in a sandbox, as the audit log keeps it."""

    id: int
    sandbox: str
    session: str
    command: str
    started_at: float
    duration: float
    exit_code: int | None
    timed_out: bool
    output_bytes: int
    truncated_bytes: int = 0
    oom_killed: bool = False
    pids_limit_hit: bool = False
    cmd_tag: str = Field("", description="value of ROCK_CMD in the command's environment (for process attribution)")
    tags: dict[str, Any] = Field(default_factory=dict, description="caller context, e.g. {'turn': 3}")
    events: list[dict[str, Any]] = Field(default_factory=list, description="telemetry events attributed to it")


class AuditLog:
    """Thread-safe, append-only list of command records with a cursor API for per-step slicing."""

    def __init__(self) -> None:
        self._records: list[CommandRecord] = []
        self._lock = threading.Lock()
        self._tags: dict[str, Any] = {}

    def set_tags(self, **tags: Any) -> None:
        """Tags merged into every later record (the agent sets {'turn': k} before running a turn's tools)."""
        with self._lock:
            self._tags = {k: v for k, v in {**self._tags, **tags}.items() if v is not None}

    def next_id(self) -> int:
        with self._lock:
            return len(self._records)

    def append(self, record: CommandRecord) -> CommandRecord:
        with self._lock:
            record = record.model_copy(update={"id": len(self._records), "tags": {**self._tags, **record.tags}})
            self._records.append(record)
            return record

    def mark(self) -> int:
        """A cursor: records appended after this call are `since(mark)`."""
        with self._lock:
            return len(self._records)

    def since(self, mark: int) -> list[CommandRecord]:
        with self._lock:
            return list(self._records[mark:])

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self):
        return iter(self.since(0))


def now() -> float:
    return time.time()
