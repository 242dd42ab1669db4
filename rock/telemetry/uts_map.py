"""Which sandbox a traced process belongs to: its UTS namespace inode (from the kernel) mapped to the container that
owns that namespace (never a name the process chose). The engine is asked only when an unknown inode shows up, at
most every `refresh_every` seconds, and the answer is cached; a cached inode is re-checked against the container's
init at every lookup (one readlink): the kernel hands a dead namespace's inode to the next namespace at once, so the
next sandbox usually gets the inode of the one just removed, and a record must never go to the dead one's file."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rock.cgroups import cgroup_procs
from rock.procfs import innermost_pid


def uts_inode(pid: int) -> int | None:
    try:
        return int(os.readlink(f"/proc/{pid}/ns/uts").split("[")[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class SandboxEntry:
    name: str
    init_pid: int


class SandboxMap:
    def __init__(self, list_containers: Callable[[], list[tuple[str, str]]], refresh_every: float = 0.25,
                 pids_of: Callable[[str], list[int] | None] = cgroup_procs) -> None:
        """`list_containers()` returns [(name, container id)] of the engine's rock-managed containers;
        `pids_of(container id)` the host pids of a container's processes."""
        self.list_containers = list_containers
        self.pids_of = pids_of
        self._lock = threading.Lock()  # the daemon's reader and its housekeeping thread both refresh
        self.refresh_every = refresh_every
        self.entries: dict[int, SandboxEntry] = {}
        self._last_refresh = 0.0
        self.running: set[str] = set()

    def lookup(self, inode: int) -> SandboxEntry | None:
        """The sandbox of a record, or None (unknown yet, or not the agent's). Never calls the engine."""
        entry = self.entries.get(inode)
        if entry is None:
            return None
        # checked every time, not every so often: a container removed a moment ago leaves its entry behind, and a
        # new sandbox with its (reused) inode would have its first records, its agent's first command included,
        # written to the old sandbox's file (its own monitor then sees nothing); the init's namespace is the truth
        if uts_inode(entry.init_pid) != inode:
            with self._lock:
                if self.entries.get(inode) is entry:
                    del self.entries[inode]
            return None
        return entry

    def known(self, inode: int) -> bool:
        return inode in self.entries

    def names(self) -> list[str]:
        with self._lock:
            return sorted({entry.name for entry in self.entries.values()})

    def refresh(self, force: bool = False) -> bool:
        """Ask the engine (rate-limited) for new sandboxes. Raises what the engine raises: callers keep their
        backlog and try again."""
        now = time.monotonic()
        if not force and now - self._last_refresh < self.refresh_every:
            return False
        self._last_refresh = now
        containers = self.list_containers()
        with self._lock:
            self.running = {name for name, _ in containers}
            known = {entry.name for entry in self.entries.values()}
            for name, container_id in containers:
                if name in known:
                    continue
                # every process of the container shares its UTS namespace; the anchor (whose /proc/PID/root paths
                # are resolved against, and whose namespace is re-verified) is the container's init, which lives as
                # long as the container: a transient process (an exec's command) would be gone a moment later
                for pid in sorted(self.pids_of(container_id) or [], key=lambda p: innermost_pid(p) != 1):
                    inode = uts_inode(pid)
                    if inode is not None:
                        self.entries[inode] = SandboxEntry(name, pid)
                        break
            for inode in [i for i, e in self.entries.items() if e.name not in self.running]:
                del self.entries[inode]
        return True
