"""Detectors: stateless rules over single observations, and stateful checks over a window or the process table."""
from __future__ import annotations

import os
from collections import deque

from rock.telemetry.events import Event, Observation, make_event
from rock.telemetry.rules import Rule, is_loopback

SHELLS = {"bash", "sh", "dash", "zsh", "ash", "ksh", "fish", "python3", "python", "perl", "ruby", "php", "node"}


def apply_rules(rules: list[Rule], obs: Observation) -> list[Event]:
    """One event per matching rule."""
    return [rule.event(obs) for rule in rules if rule.matches(obs)]


class ScanDetector:
    """`threshold` distinct (address, port) connect targets within `window` seconds is a scan."""

    def __init__(self, window: float = 5.0, threshold: int = 8) -> None:
        self.window, self.threshold = window, threshold
        self.recent: deque[tuple[float, str, int | None]] = deque()
        self.fired_until = 0.0

    def observe(self, obs: Observation) -> list[Event]:
        if obs.kind != "connect" or obs.data.get("source") == "command":
            return []
        self.recent.append((obs.time, obs.address, obs.port))
        while self.recent and self.recent[0][0] < obs.time - self.window:
            self.recent.popleft()
        targets = {(address, port) for _, address, port in self.recent}
        if len(targets) < self.threshold or obs.time < self.fired_until:
            return []
        self.fired_until = obs.time + self.window
        hosts = sorted({address for address, _ in targets})
        return [make_event("network.scan", "connect-fanout",
                           f"{len(targets)} distinct targets in {self.window:.0f}s", time=obs.time,
                           sandbox=obs.sandbox, pid=obs.pid, source=obs.data.get("source", "ebpf"),
                           detail={"targets": len(targets), "hosts": hosts[:20], "loopback_only":
                                   all(is_loopback(h) for h in hosts)})]


def _fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""


def socket_shells(host_pids: list[int]) -> list[tuple[int, str]]:
    """Interpreters whose stdin or stdout is a socket: the signature of a reverse shell (host view of /proc)."""
    found = []
    for pid in host_pids:
        comm = _comm(pid)
        if comm in SHELLS and any(_fd_target(pid, fd).startswith("socket:") for fd in (0, 1)):
            found.append((pid, comm))
    return found


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class CpuAnomalyDetector:
    """Sustained CPU use while no command runs: something left behind is computing."""

    def __init__(self, cores: float = 0.5, seconds: float = 3.0) -> None:
        self.cores, self.seconds = cores, seconds
        self.last: tuple[float, int] | None = None
        self.busy_since: float | None = None
        self.fired = False

    def sample(self, now: float, cpu_ns: int | None, command_running: bool, sandbox: str) -> list[Event]:
        if cpu_ns is None:
            return []
        previous, self.last = self.last, (now, cpu_ns)
        if previous is None or now <= previous[0]:
            return []
        rate = (cpu_ns - previous[1]) / 1e9 / (now - previous[0])
        if command_running or rate < self.cores:
            self.busy_since, self.fired = None, False
            return []
        self.busy_since = self.busy_since or previous[0]
        if self.fired or now - self.busy_since < self.seconds:
            return []
        self.fired = True
        return [make_event("compute.anomaly", "idle-cpu", f"{rate:.2f} cores busy for {now - self.busy_since:.1f}s "
                           "with no command running", time=now, sandbox=sandbox, source="cgroup",
                           detail={"cores": round(rate, 3)})]
