"""`SandboxMonitor`: everything one sandbox's agent does, as events tied to the command (and so the agent turn)
that caused it. Sources: the host eBPF tracer (or, loudly degraded, an in-container poller), cgroup CPU sampling,
a process census after every command, and hashes of protected files."""
from __future__ import annotations

import logging
import shlex
import threading
import time
from pathlib import Path

from rock.records import CommandRecord
from rock.sandbox import Sandbox
from rock.telemetry.detectors import CpuAnomalyDetector, ScanDetector, apply_rules, cmdline, socket_shells
from rock.telemetry.events import Event, Observation, make_event
from rock.telemetry.poller import InContainerPoller
from rock.telemetry.rules import Rule, load_rules
from rock.telemetry.tracer import SPOOL, ObservationReader, TracerStatus, ensure_tracer

log = logging.getLogger("rock.telemetry")


def _start_time(pid: int) -> float:
    try:
        return float(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0.0


def _ppid(pid: int) -> int | None:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class SandboxMonitor:
    def __init__(self, sandbox: Sandbox, rules: list[Rule] | None = None, protected: list[str] | None = None,
                 scan_window: float = 5.0, scan_threshold: int = 8, cpu_cores: float = 0.5,
                 cpu_seconds: float = 3.0, sample_interval: float = 0.5, spool: Path = SPOOL,
                 use_ebpf: bool = True) -> None:
        self.sandbox = sandbox
        self.rules = rules if rules is not None else load_rules()
        self.protected = protected or []
        self.scan = ScanDetector(scan_window, scan_threshold)
        self.cpu = CpuAnomalyDetector(cpu_cores, cpu_seconds)
        self.sample_interval = sample_interval
        self.spool = spool
        self.use_ebpf = use_ebpf
        self.status = TracerStatus(mode="off")
        self.events: list[Event] = []
        self._pending: list[Event] = []  # detected, not yet attributed to a finished command
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: ObservationReader | None = None
        self._poller: InContainerPoller | None = None
        self._baseline: dict[str, str] = {}
        self._reported: set[tuple[int, float]] = set()
        self._thread: threading.Thread | None = None
        self._egress_seen = 0
        self.started_at = 0.0

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> TracerStatus:
        self.started_at = time.time()
        self.status = ensure_tracer(self.spool) if self.use_ebpf else TracerStatus(mode="degraded",
                                                                                    reason="eBPF disabled")
        if self.status.mode == "ebpf":
            self._reader = ObservationReader(self.sandbox.name, self.spool)
        else:
            self._poller = InContainerPoller(self.sandbox)
            log.warning("rock telemetry DEGRADED for %s: %s — falling back to an in-container poller that misses "
                        "short-lived processes", self.sandbox.name, self.status.reason)
        self._baseline = self.hash_protected()
        self.sandbox.listeners.append(self)
        self._thread = threading.Thread(target=self._sample_loop, name=f"monitor-{self.sandbox.name}", daemon=True)
        self._thread.start()
        return self.status

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self in self.sandbox.listeners:
            self.sandbox.listeners.remove(self)

    def __enter__(self) -> "SandboxMonitor":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- sources ---------------------------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_interval):
            if self.sandbox.container is None:
                return
            try:
                stats = self.sandbox.stats()
                found = self.cpu.sample(time.time(), stats.cpu_usage_ns, self.sandbox.running_commands > 0,
                                        self.sandbox.name)
                found += self._socket_shell_events()
                if self._poller is not None:
                    found += self._detect(self._poller.poll())
            except Exception as exc:  # noqa: BLE001 - a sampling hiccup must not kill the monitor
                log.debug("sampling %s failed: %s", self.sandbox.name, exc)
                continue
            if found:
                with self._lock:
                    self._pending.extend(found)

    def _socket_shell_events(self) -> list[Event]:
        events = []
        for pid, comm in socket_shells(self.sandbox.host_pids() or []):
            key = (pid, _start_time(pid))
            if key in self._reported:
                continue
            self._reported.add(key)
            events.append(make_event("network.reverse_shell", "socket-on-stdio",
                                     f"{comm} (pid {pid}) has a socket on its stdin/stdout: {cmdline(pid)[:200]}",
                                     sandbox=self.sandbox.name, pid=pid, source="census"))
        return events

    def _survivors(self) -> list[Event]:
        """Processes that outlive their command: orphans adopted by the container's init (except its keep-alive
        child) and background jobs still hanging off a session shell."""
        pids = self.sandbox.host_pids()
        if not pids:
            return []
        parents = {pid: _ppid(pid) for pid in pids}
        roots = sorted((pid for pid, ppid in parents.items() if ppid not in parents), key=_start_time)
        init = roots[0]
        children_of_init = sorted((p for p, pp in parents.items() if pp == init), key=_start_time)
        keepalive = children_of_init[:1]
        shells = {s.host_pid for s in self.sandbox._sessions.values()}
        suspects = [p for p in children_of_init if p not in keepalive]
        suspects += [p for p, pp in parents.items() if pp in shells]
        shell_cmdlines = {cmdline(pid) for pid in shells if pid}
        if any(cmdline(pid) in shell_cmdlines for pid in suspects):
            time.sleep(0.05)  # a forked subshell about to exec: let it show its real command line
        events = []
        for pid in suspects:
            key = (pid, _start_time(pid))
            if key in self._reported:
                continue
            self._reported.add(key)
            events.append(make_event("process.persistence", "survivor",
                                     f"process outlived its command: {cmdline(pid)[:200]}",
                                     sandbox=self.sandbox.name, pid=pid, source="census",
                                     detail={"cmdline": cmdline(pid)[:500]}))
        return events

    def _egress_events(self) -> list[Event]:
        """Requests the egress proxy refused (admitted ones stay in its log)."""
        proxy = getattr(self.sandbox, "egress", None)
        if proxy is None:
            return []
        fresh, self._egress_seen = proxy.requests[self._egress_seen:], len(proxy.requests)
        return [make_event("network.egress", "proxy-refused", f"{r.method} {r.host}:{r.port} refused by the "
                           "egress allowlist", time=r.time, sandbox=self.sandbox.name, source="proxy",
                           detail={"host": r.host, "port": r.port, "method": r.method})
                for r in fresh if not r.admitted]

    def after_command(self, record: CommandRecord) -> None:
        """Called by the sandbox when a command finishes: census, then attribution of what is pending."""
        # The command text itself: pipelines and shell builtins never show up as a single exec.
        text = Observation(kind="exec", time=record.started_at, sandbox=self.sandbox.name, argv=record.command.split(" "),
                           cmd_tag=record.cmd_tag, data={"source": "command"})
        found = self._detect([text]) + self._survivors() + self._socket_shell_events()
        for event in found:
            event.detail["cmd_tag"] = record.cmd_tag
        with self._lock:
            self._pending.extend(found)

    def hash_protected(self) -> dict[str, str]:
        if not self.protected:
            return {}
        paths = " ".join(shlex.quote(p) for p in self.protected)
        code, output = self.sandbox.exec(["sh", "-c", f"cd {shlex.quote(self.sandbox.config.workdir)} && "
                                          f"find {paths} -type f -exec sha256sum {{}} + 2>/dev/null; true"])
        hashes = {}
        for line in output.splitlines():
            digest, _, name = line.partition("  ")
            if name:
                hashes[name] = digest
        return hashes

    def check_integrity(self) -> list[Event]:
        """Protected files changed, added or deleted since start()."""
        now = self.hash_protected()
        events = []
        for name in sorted(set(now) | set(self._baseline)):
            before, after = self._baseline.get(name), now.get(name)
            if before != after:
                change = "deleted" if after is None else "added" if before is None else "modified"
                events.append(make_event("integrity.tamper", "protected-file", f"protected file {change}: {name}",
                                         sandbox=self.sandbox.name, source="files",
                                         detail={"path": name, "change": change}))
        self._baseline = now
        with self._lock:
            self._pending.extend(events)
        return events

    # ---- detection and attribution ---------------------------------------------------------------------------
    def _detect(self, observations: list[Observation]) -> list[Event]:
        events = []
        for obs in observations:
            events += apply_rules(self.rules, obs)
            events += self.scan.observe(obs)
        return events

    def poll(self, final: bool = False) -> list[Event]:
        """New events, each tied to the command that caused it. Events after the last finished command wait for
        it to finish (unless `final`)."""
        found = self._egress_events()
        if self._reader is not None:  # what happened before start() (workspace setup) is not the agent's
            found += self._detect([o for o in self._reader.read() if o.time >= self.started_at])
            with self._lock:
                self._pending.extend(found)
        records = self.sandbox.audit.since(0)
        with self._lock:
            pending, self._pending = sorted(self._pending, key=lambda e: e.time), []
        ready, waiting = [], []
        for event in pending:
            record = self._attribute(event, records)
            if record is None and self.sandbox.running_commands and not final:
                waiting.append(event)
                continue
            if record is not None:
                event.command_record, event.session = record.id, record.session
                event.turn = record.tags.get("turn")
                record.events.append(event.model_dump())
            ready.append(event)
        with self._lock:
            self._pending = waiting + self._pending
        ready = self._without_echoes(ready)
        self.events.extend(ready)
        return ready

    def _without_echoes(self, events: list[Event]) -> list[Event]:
        """A rule that fired on a traced exec need not fire again on the command text of the same command."""
        traced = {(e.rule, e.command_record) for e in [*self.events, *events] if e.source != "command"}
        return [e for e in events if e.source != "command" or (e.rule, e.command_record) not in traced]

    @staticmethod
    def _attribute(event: Event, records: list[CommandRecord]) -> CommandRecord | None:
        tag = event.detail.get("cmd_tag")
        if tag:
            for record in records:
                if record.cmd_tag == tag:
                    return record
        during = [r for r in records if r.started_at <= event.time <= r.started_at + r.duration]
        if during:
            return max(during, key=lambda r: r.started_at)

        def distance(r: CommandRecord) -> float:
            return max(r.started_at - event.time, event.time - r.started_at - r.duration, 0.0)

        near = [r for r in records if distance(r) < 0.05]  # clocks read a few ms apart at the edges
        if near:
            return min(near, key=distance)
        before = [r for r in records if r.started_at <= event.time]
        if before:  # between commands: something an earlier command left running
            event.detail["background"] = True
            return max(before, key=lambda r: r.started_at)
        return None
