"""Freezing a container's processes through its cgroup freezer, written directly from the host.

Not `docker pause`: a pause that lands while the engine is starting an exec in the container freezes `runc init`
inside the cgroup, the runtime shim then waits on it, and the `unpause` queued behind it never comes: the container,
and every engine call that touches it, hangs. Written directly, the thaw does not wait on the shim, and an exec
caught by the freeze simply resumes with it."""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rock.cgroups import cgroup_dir

SETTLE_SECONDS = 2.0  # how long to wait for the kernel to report the whole group frozen


def _v1(container_id: str) -> Path | None:
    directory = cgroup_dir(container_id, "freezer")
    return directory if directory is not None and (directory / "freezer.state").exists() else None


def _v2(container_id: str) -> Path | None:
    directory = cgroup_dir(container_id, "")
    return directory if directory is not None and (directory / "cgroup.freeze").exists() else None


def can_freeze(container_id: str) -> bool:
    return _v1(container_id) is not None or _v2(container_id) is not None


def _settle(read_frozen) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not read_frozen() and time.monotonic() < deadline:
        time.sleep(0.001)


def _freeze(container_id: str) -> bool:
    v1 = _v1(container_id)
    if v1 is not None:
        (v1 / "freezer.state").write_text("FROZEN")
        _settle(lambda: (v1 / "freezer.state").read_text().strip() == "FROZEN")
        return True
    v2 = _v2(container_id)
    if v2 is not None:
        (v2 / "cgroup.freeze").write_text("1")
        _settle(lambda: "frozen 1" in (v2 / "cgroup.events").read_text())
        return True
    return False


def _thaw(container_id: str) -> None:
    """Thaw, and wait until the kernel reports it: the transition is asynchronous, and the runtime refuses an exec
    ("cannot exec in a paused container") while the group still reads frozen."""
    v1 = _v1(container_id)
    if v1 is not None:
        (v1 / "freezer.state").write_text("THAWED")
        _settle(lambda: (v1 / "freezer.state").read_text().strip() == "THAWED")
    v2 = _v2(container_id)
    if v2 is not None:
        (v2 / "cgroup.freeze").write_text("0")
        _settle(lambda: "frozen 0" in (v2 / "cgroup.events").read_text())


@contextmanager
def frozen(container_id: str) -> Iterator[bool]:
    """Freeze the container's processes for the block (yields False, freezing nothing, where no freezer is
    visible). Always thawed on the way out, whatever the block raised."""
    try:
        done = _freeze(container_id)
    except OSError:
        done = False
    try:
        yield done
    finally:
        if done:
            _thaw(container_id)
