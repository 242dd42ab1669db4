"""`SandboxMonitor`: everything one sandbox's agent does, as events tied to the command (and so the agent turn)
that caused it. Sources: the host eBPF tracer (or, loudly degraded, an in-container poller), the command text,
CPU sampling (whole container and per process), a process census, and hashes of protected and persistence files.
The jobs live in their own modules: census (processes), integrity (files), attribution (which command), sampling
(the background thread); this module wires them to one sandbox."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rock.records import CommandRecord
from rock.sandbox import Sandbox
from rock.telemetry.attribution import Attribution, Deduplicator
from rock.telemetry.census import ProcessCensus
from rock.telemetry.command_text import command_observations
from rock.telemetry.detectors import BackgroundCpuDetector, CpuAnomalyDetector, PtraceJudge, ScanDetector, apply_rules
from rock.telemetry.events import Event, Observation, make_event
from rock.telemetry.integrity import FileWatch
from rock.telemetry.poller import InContainerPoller
from rock.telemetry.rules import Rule, load_rules
from rock.telemetry.sampling import Sampler
from rock.telemetry.stopper import CRITICAL, CriticalStopper
from rock.telemetry.tracer import SPOOL, ObservationReader, TracerStatus, ensure_tracer

log = logging.getLogger("rock.telemetry")


class SandboxMonitor:
    def __init__(self, sandbox: Sandbox, rules: list[Rule] | None = None, protected: list[str] | None = None,
                 scan_window: float = 5.0, scan_threshold: int = 8, cpu_cores: float = 0.5,
                 cpu_seconds: float = 3.0, sample_interval: float = 0.5, spool: Path = SPOOL,
                 use_ebpf: bool = True, background_cpu_seconds: float = 2.0, background_window: float = 30.0,
                 scan_loopback: bool = False, stop_critical: bool = True, watch_interval: float = 0.02) -> None:
        self.sandbox = sandbox
        self.rules = rules if rules is not None else load_rules()
        self.protected = protected or []
        self.scan = ScanDetector(scan_window, scan_threshold, loopback=scan_loopback)
        self.cpu = CpuAnomalyDetector(cpu_cores, cpu_seconds)
        self.attribution = Attribution()
        self.census = ProcessCensus(sandbox.name, self.attribution.lineage,
                                    BackgroundCpuDetector(background_cpu_seconds, background_window))
        self.ptrace = PtraceJudge()
        self.files = FileWatch(lambda argv: sandbox.exec(argv), sandbox.config.workdir, self.protected, sandbox.name)
        self.dedupe = Deduplicator()
        self.sample_interval = sample_interval
        self.spool = spool
        self.use_ebpf = use_ebpf
        self.status = TracerStatus(mode="off")
        self.events: list[Event] = []
        self._pending: list[Event] = []  # detected, not yet attributed to a finished command
        self._lock = threading.Lock()
        self._reader: ObservationReader | None = None
        self._poller: InContainerPoller | None = None
        self._sampler = Sampler(sandbox.name, sample_interval, self._tick, self._add)
        self._spool_lock = threading.Lock()
        self._detect_lock = threading.Lock()  # detectors keep state (lineage, scans); several threads feed them
        self._stopper = CriticalStopper(lambda: list(sandbox._sessions.values()), CRITICAL if stop_critical else ())
        # drains the tracer's spool as records arrive, so a critical event is acted on within milliseconds
        self._watcher = Sampler(f"spool-{sandbox.name}", watch_interval, lambda: self._drain_spool(None), self._add)
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
        self.files.start()
        self.census.processes(self.sandbox.host_pids())  # what exists now is the workspace's, not a command's
        self.sandbox.listeners.append(self)
        self._sampler.start()
        if self._reader is not None:
            self._watcher.start()
        return self.status

    def stop(self) -> None:
        self._sampler.stop()
        self._watcher.stop()
        if self in self.sandbox.listeners:
            self.sandbox.listeners.remove(self)

    def __enter__(self) -> SandboxMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the sandbox as the monitor needs it -----------------------------------------------------------------
    def _shells(self) -> dict[int, str]:
        return {s.host_pid: name for name, s in list(self.sandbox._sessions.items()) if s.host_pid}

    def _running(self, session: str) -> bool:
        lock = self.sandbox._session_locks.get(session)
        return bool(lock is not None and lock.locked())

    def _last_end(self, session: str) -> float:
        ends = [r.started_at + r.duration for r in self.sandbox.audit.since(0) if r.session == session]
        return max(ends, default=self.started_at)

    def _add(self, events: list[Event]) -> None:
        self._stopper.act(events)  # a critical event stops the running command now, not at the turn's end
        with self._lock:
            self._pending.extend(events)

    # ---- sources ---------------------------------------------------------------------------------------------
    def _tick(self) -> list[Event] | None:
        if self.sandbox.container is None:
            return None
        now = time.time()
        found = self.cpu.sample(now, self.sandbox.stats().cpu_usage_ns, self.sandbox.running_commands > 0,
                                self.sandbox.name)
        procs = self.census.processes(self.sandbox.host_pids())
        found += self.census.socket_shells(procs)
        found += self.census.cpu_events(procs, self._shells(), self._running, self._last_end, now)
        if self._poller is not None:
            found += self._detect(self._poller.poll())
        return found

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
        """Called by the sandbox when a command finishes: its text, then a census of what it left behind."""
        found = self._detect(command_observations(record.command, self.sandbox.name, record.started_at,
                                                  record.cmd_tag))
        for event in found:
            event.command_record = record.id
        procs = self.census.processes(self.sandbox.host_pids())
        found += self.census.survivors(procs, self._shells()) + self.census.socket_shells(procs)
        self._add(found)

    def hash_protected(self) -> dict[str, str]:
        return {name.partition(":")[2]: digest for name, digest in self.files.hashes().items()
                if name.startswith("protected:")}

    def check_integrity(self) -> list[Event]:
        """Protected, persistence and test-configuration files changed, added or deleted since the last check:
        put on the command that finished last."""
        events = self.files.check()
        records = self.sandbox.audit.since(0)
        for event in events:
            if records:
                event.detail["after_record"] = records[-1].id
        self._add(events)
        return events

    # ---- detection and attribution ---------------------------------------------------------------------------
    def _detect(self, observations: list[Observation]) -> list[Event]:
        with self._detect_lock:
            return self._detect_unlocked(observations)

    def _detect_unlocked(self, observations: list[Observation]) -> list[Event]:
        events = []
        for obs in observations:
            if obs.kind == "lost":  # the tracer dropped kernel events: the episode's record has a gap
                events.append(make_event("telemetry.lost", "ebpf-lost", f"{obs.data.get('events', 0)} kernel "
                                         "events lost by the tracer", time=obs.time, sandbox=obs.sandbox,
                                         source="ebpf", detail=dict(obs.data)))
                continue
            self.attribution.lineage.learn(obs)
            if self.ptrace.observe(obs):
                continue
            events += apply_rules(self.rules, obs)
            events += self.scan.observe(obs)
        return events

    def _drain_spool(self, until: float | None) -> list[Event]:
        """The tracer's new observations as events (the watcher thread and poll share one reader)."""
        if self._reader is None:
            return []
        with self._spool_lock:  # what happened before start() (workspace setup) is not the agent's
            return self._detect([o for o in self._reader.read(until=until) if o.time >= self.started_at])

    def poll(self, final: bool = False) -> list[Event]:
        """New events, each tied to the command that caused it. Events after the last finished command wait for
        it to finish (unless `final`)."""
        found = self._egress_events()
        # drained up to now: an eBPF-only event of the command that just ended is judged on its turn
        found += self._drain_spool(until=time.time())
        found += self.ptrace.judge(time.time(), self.attribution.lineage.parent, final)
        self._add(found)
        records = self.sandbox.audit.since(0)
        shells = self._shells()
        with self._lock:
            pending, self._pending = sorted(self._pending, key=lambda e: e.time), []
        ready, waiting = [], []
        running = bool(self.sandbox.running_commands) and not final
        for event in pending:
            record = self.attribution.attribute(event, records, shells, wait_for_running=running)
            if record is None and running:
                waiting.append(event)
                continue
            if record is not None:
                event.command_record, event.session = record.id, record.session
                event.turn = record.tags.get("turn")
            if not self.dedupe.admit(event):
                continue
            if record is not None:
                stored = event.model_dump()
                record.events.append(stored)
                self.dedupe.remember(event, stored)
            ready.append(event)
        with self._lock:
            self._pending = waiting + self._pending
        self.events.extend(ready)
        return ready
