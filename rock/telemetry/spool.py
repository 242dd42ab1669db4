"""The tracer's file interface, shared by the daemon (writer) and every monitor (reader):

- `<spool>/<sandbox>.jsonl`: one Observation per line, appended by the daemon;
- `<spool>/ready`: the daemon's pid and start time, to be verified before it is trusted (tracer.tracer_pid);
- `<spool>/heartbeat`: JSON rewritten (atomically) by the daemon as bpftrace's output advances: its pid and start
  time, the wall time of the update, the `watermark` (wall-clock time up to which every kernel event has been
  written to the sandbox files) and the events bpftrace reported lost."""
from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from rock.telemetry.events import Observation

HEARTBEAT = "heartbeat"
PID_FILE = "ready"  # JSON: the daemon's pid and start time (clock ticks), written once bpftrace has attached
STALE_AFTER = 3.0  # seconds without a heartbeat update: the daemon (or its bpftrace) is not alive


def write_heartbeat(spool: Path, **fields: Any) -> None:
    tmp = spool / f".{HEARTBEAT}.{os.getpid()}"
    tmp.write_text(json.dumps({**fields, "updated": time.time()}))
    os.replace(tmp, spool / HEARTBEAT)


def read_heartbeat(spool: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((spool / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class SpoolWriter:
    """Appends observations to per-sandbox files, keeping at most `max_open` files open (least recently used closed
    first), and deletes the files of sandboxes that are gone."""

    def __init__(self, spool: Path, max_open: int = 64) -> None:
        self.spool = spool
        self.max_open = max_open
        self.handles: OrderedDict[str, IO[str]] = OrderedDict()

    def path(self, sandbox: str) -> Path:
        return self.spool / f"{sandbox}.jsonl"

    def write(self, sandbox: str, observation: Observation) -> None:
        handle = self.handles.pop(sandbox, None)
        if handle is None:
            handle = self.path(sandbox).open("a")
            while len(self.handles) >= self.max_open:
                self.handles.popitem(last=False)[1].close()
        self.handles[sandbox] = handle
        handle.write(observation.model_dump_json() + "\n")
        handle.flush()

    def close(self, sandbox: str) -> None:
        handle = self.handles.pop(sandbox, None)
        if handle is not None:
            handle.close()

    def close_all(self) -> None:
        for sandbox in list(self.handles):
            self.close(sandbox)

    def clean(self, running: set[str], grace: float = 60.0, max_age: float = 24 * 3600.0) -> list[str]:
        """Delete the files of sandboxes no longer running (untouched for `grace` s, so a monitor can read its
        last lines) and of any sandbox untouched for `max_age` s. Returns the sandbox names removed."""
        now = time.time()
        removed = []
        for file in self.spool.glob("*.jsonl"):
            sandbox = file.name[: -len(".jsonl")]
            try:
                idle = now - file.stat().st_mtime
            except OSError:
                continue
            if (sandbox not in running and idle > grace) or idle > max_age:
                self.close(sandbox)
                file.unlink(missing_ok=True)
                removed.append(sandbox)
        return removed


class ObservationReader:
    """Tails one sandbox's spool file."""

    def __init__(self, sandbox: str, spool: Path) -> None:
        self.spool = spool
        self.path = spool / f"{sandbox}.jsonl"
        self.offset = 0
        self.lagging = False  # the last read(until=...) gave up waiting for the daemon

    def wait_for(self, until: float, timeout: float = 1.0) -> bool:
        """Wait (bounded) until the daemon has written every kernel event up to wall time `until`."""
        deadline = time.monotonic() + timeout
        while True:
            beat = read_heartbeat(self.spool) or {}
            if float(beat.get("watermark", 0.0)) >= until:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def read(self, until: float | None = None, timeout: float = 1.0) -> list[Observation]:
        """New observations; with `until`, first drain the tracer up to that wall-clock time."""
        if until is not None:
            self.lagging = not self.wait_for(until, timeout)
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:
                    self.offset = 0  # the file was removed and started again
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [Observation.model_validate(json.loads(line)) for line in complete.decode().splitlines() if line]
