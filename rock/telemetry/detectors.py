"""Detectors: stateless rules over single observations, and stateful checks over a window of observations or of
CPU samples."""
from __future__ import annotations

from collections import deque
from collections.abc import Hashable

from rock.telemetry.events import Event, Observation, make_event
from rock.telemetry.rules import Rule, is_loopback


def apply_rules(rules: list[Rule], obs: Observation) -> list[Event]:
    """One event per matching rule. The command text comes twice: whole (rules without `path:`) and as simple
    commands whose first word is the path (rules with `path:`), so that neither is counted twice."""
    if obs.data.get("source") == "command":
        segment = bool(obs.data.get("segment"))
        rules = [rule for rule in rules if (rule.path is not None) == segment]
    return [rule.event(obs) for rule in rules if rule.matches(obs)]


class ScanDetector:
    """`threshold` distinct (address, port) connect targets within `window` seconds is a scan. Loopback targets
    count only with `loopback=True`: a test suite starting many local servers is the sandbox's own business."""

    def __init__(self, window: float = 5.0, threshold: int = 8, loopback: bool = False) -> None:
        self.window, self.threshold, self.loopback = window, threshold, loopback
        self.recent: deque[tuple[float, str, int | None]] = deque()
        self.fired_until = 0.0

    def observe(self, obs: Observation) -> list[Event]:
        if obs.kind != "connect" or obs.data.get("source") == "command":
            return []
        if not self.loopback and is_loopback(obs.address):
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


class CpuAnomalyDetector:
    """The whole container: sustained CPU use while no command runs (something left behind is computing)."""

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


class BackgroundCpuDetector:
    """Per process: `cpu_seconds` of CPU within `window` seconds while the process was not started by a command
    that is running now. Catches a miner throttled far below one core, or one running beside a foreground command.
    `sample` gets each process's cumulative CPU seconds and whether it is background; it returns the processes
    that crossed the line (once each)."""

    def __init__(self, cpu_seconds: float = 2.0, window: float = 30.0) -> None:
        self.cpu_seconds, self.window = cpu_seconds, window
        self._last: dict[Hashable, float] = {}
        self._spent: dict[Hashable, deque[tuple[float, float]]] = {}
        self.fired: set[Hashable] = set()

    def sample(self, now: float, usage: dict[Hashable, tuple[float, bool]]) -> list[tuple[Hashable, float]]:
        crossed = []
        for key, (total, background) in usage.items():
            previous, self._last[key] = self._last.get(key), total
            if previous is None or key in self.fired:
                continue
            spent = self._spent.setdefault(key, deque())
            if background and total > previous:
                spent.append((now, total - previous))
            while spent and spent[0][0] < now - self.window:
                spent.popleft()
            recent = sum(delta for _, delta in spent)
            if recent >= self.cpu_seconds:
                self.fired.add(key)
                crossed.append((key, recent))
        for key in set(self._last) - set(usage):  # gone
            self._last.pop(key, None)
            self._spent.pop(key, None)
        return crossed


class PtraceJudge:
    """ptrace is a debugger's daily work (gdb, strace of their own child, whose PTRACE_TRACEME is a ptrace too):
    it is an escape attempt only from a process that traces no child of its own. Judged `delay` seconds after the
    call (the child's exec may be reported later), or at once when `final`."""

    def __init__(self, delay: float = 0.5) -> None:
        self.delay = delay
        self.pending: dict[int, Observation] = {}
        self.callers: set[int] = set()
        self.judged: set[int] = set()

    def observe(self, obs: Observation) -> bool:
        """True when the observation is a ptrace call (this judge's business, not the plain syscall rules')."""
        if obs.kind != "syscall" or obs.syscall != "ptrace" or obs.pid is None:
            return False
        self.callers.add(obs.pid)
        if obs.pid not in self.judged:
            self.pending.setdefault(obs.pid, obs)
        return True

    def judge(self, now: float, parent: dict[int, int], final: bool = False) -> list[Event]:
        events = []
        children: set[int] = set(parent.values())
        for pid, obs in list(self.pending.items()):
            if not final and now < obs.time + self.delay:
                continue
            del self.pending[pid]
            self.judged.add(pid)
            if pid in children or parent.get(pid) in self.callers:
                continue
            events.append(make_event("sandbox.escape", "ptrace-attach", f"ptrace by {obs.comm or pid} (pid {pid}), "
                                     "which debugs no child of its own", time=obs.time, sandbox=obs.sandbox, pid=pid,
                                     source=obs.data.get("source", "ebpf"), detail={"comm": obs.comm}))
        return events
