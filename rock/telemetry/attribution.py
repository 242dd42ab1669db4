"""Which command caused an event, decided by the host's view only (never by ROCK_CMD, which the agent can rewrite):
the process's ancestry up to a session shell, its start time against the command windows of that session, and the
event's own time. An event by a process that an earlier command left running is `background`, on its origin command;
the same rule on the same command is one event whatever the number of sources that saw it."""
from __future__ import annotations

from typing import Any

from rock.records import CommandRecord
from rock.telemetry.events import Event, Observation

EDGE = 0.05  # seconds: clocks read a few ms apart at the edges of a command
# the merged event's `source` is its strongest witness: the kernel over host checks over the agent's own text
SOURCE_RANK = {"command": 0, "ebpf": 2}  # any other source: 1
MAX_DEPTH = 64


class Lineage:
    """pid -> parent and start time, learned from observations (the parent at exec time survives reparenting) and
    from /proc while processes are alive."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.start: dict[int, float] = {}

    def learn(self, obs: Observation) -> None:
        if obs.pid is None:
            return
        if obs.ppid is not None and obs.pid != obs.ppid:
            self.parent.setdefault(obs.pid, obs.ppid)
        kernel = obs.data.get("ktime_ns"), obs.data.get("start_ns")
        if obs.start_time is not None:
            self.start[obs.pid] = obs.start_time
        elif all(isinstance(value, int) and value > 0 for value in kernel):  # the tracer's task start, same clock
            self.start[obs.pid] = obs.time - (kernel[0] - kernel[1]) / 1e9
        elif obs.kind == "exec" and obs.pid not in self.start:
            self.start[obs.pid] = obs.time  # it existed by then: an upper bound of its start

    def learn_process(self, pid: int, ppid: int, start: float) -> None:
        if pid != ppid and ppid > 0:
            self.parent.setdefault(pid, ppid)
        self.start[pid] = start

    def chain(self, pid: int) -> list[int]:
        chain = [pid]
        while len(chain) < MAX_DEPTH and (parent := self.parent.get(chain[-1])) is not None and parent not in chain:
            chain.append(parent)
        return chain


def _end(record: CommandRecord) -> float:
    return record.started_at + record.duration


def _during(records: list[CommandRecord], moment: float) -> list[CommandRecord]:
    return [r for r in records if r.started_at - EDGE <= moment <= _end(r) + EDGE]


def _distance(record: CommandRecord, moment: float) -> float:
    return max(record.started_at - moment, moment - _end(record), 0.0)


def _best(candidates: list[CommandRecord], moment: float) -> CommandRecord | None:
    """The record whose window holds `moment`, else the nearest within EDGE; among several, the latest started
    (an outer command and the one it waits on)."""
    if not candidates:
        return None
    nearest = min(_distance(r, moment) for r in candidates)
    return max((r for r in candidates if _distance(r, moment) == nearest), key=lambda r: r.started_at)


class Attribution:
    def __init__(self) -> None:
        self.lineage = Lineage()

    def origin(self, pid: int, shells: dict[int, str], records: list[CommandRecord],
               moment: float) -> tuple[CommandRecord | None, bool]:
        """(the command that started the process, whether the process is known to descend from a session shell)."""
        chain = self.lineage.chain(pid)
        session, top = None, pid
        for index, ancestor in enumerate(chain):
            if ancestor in shells:
                session, top = shells[ancestor], chain[index - 1] if index else ancestor
                break
        if session is not None and top in shells:  # the session shell itself (a builtin, a /dev/tcp redirect)
            return _best([r for r in _during(records, moment) if r.session == session], moment), True
        start = self.lineage.start.get(top, self.lineage.start.get(pid))
        if start is None:
            return None, session is not None
        candidates = [r for r in _during(records, start) if session is None or r.session == session]
        return _best(candidates, start), session is not None

    def attribute(self, event: Event, records: list[CommandRecord], shells: dict[int, str],
                  wait_for_running: bool = False) -> CommandRecord | None:
        """The record the event belongs to (None: not yet known); sets `event.background`. With
        `wait_for_running` (a command runs now and has no record yet), an event after the last record that no
        earlier command explains is left for that command's record (None)."""
        by_id = {r.id: r for r in records}
        if event.command_record is not None and event.command_record in by_id:  # the command text itself
            return by_id[event.command_record]
        after = event.detail.get("after_record")
        if after is not None and after in by_id:  # a file check right after a command
            return by_id[after]
        during = _during(records, event.time)
        if event.pid is not None:
            origin, _ = self.origin(event.pid, shells, records, event.time)
            if origin is not None:
                event.background = origin not in during
                return origin
        if during:
            return _best(during, event.time)
        if wait_for_running and (not records or event.time > max(_end(r) for r in records) + EDGE):
            return None
        before = [r for r in records if r.started_at <= event.time]
        if before:  # between commands: something an earlier command left running
            event.background = True
            return max(before, key=lambda r: r.started_at)
        return None


STOP_KEYS = ("stopped_command", "stopped_at", "stop_latency_s")  # set by rock.telemetry.stopper


class Deduplicator:
    """One event per (rule, command, background): later sightings add their source and a count."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Any, ...], tuple[Event, dict[str, Any] | None]] = {}

    def admit(self, event: Event, stored: dict[str, Any] | None = None) -> bool:
        key = (event.rule, event.command_record, event.background, event.sandbox)
        if key not in self._seen:
            self._seen[key] = (event, stored)
            return True
        first, first_stored = self._seen[key]
        for source in event.sources or [event.source]:
            if source not in first.sources:
                first.sources.append(source)
        if SOURCE_RANK.get(event.source, 1) > SOURCE_RANK.get(first.source, 1):
            first.source = event.source
            first.pid = first.pid if first.pid is not None else event.pid
        first.detail["count"] = first.detail.get("count", 1) + 1
        stop = {k: event.detail[k] for k in STOP_KEYS if k in event.detail and k not in first.detail}
        first.detail.update(stop)  # a later sighting that stopped the command: the kept event says so
        if first_stored is not None:
            first_stored["sources"], first_stored["source"] = list(first.sources), first.source
            first_stored.setdefault("detail", {}).update(count=first.detail["count"], **stop)
        return False

    def remember(self, event: Event, stored: dict[str, Any]) -> None:
        key = (event.rule, event.command_record, event.background, event.sandbox)
        if key in self._seen:
            self._seen[key] = (self._seen[key][0], stored)
