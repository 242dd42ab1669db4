"""Decoding the tracer's bpftrace output (`-f json`). Each JSON object is one record; its text is split on tabs into
fixed fields and, last, at most one free-form string (a path or an argument), so nothing the agent writes can add,
move or end a field. An exec's arguments come as separate `A` records keyed by the exec's (kernel time, thread)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from rock.telemetry.bpf import HEAD_FIELDS, MAX_ARGS

ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# kind -> number of fixed fields after the head (the free string, if any, is the rest)
TAIL_FIELDS = {"X": 3, "O": 3, "L": 3, "C": 2, "S": 0}


@dataclass
class Record:
    kind: str  # X exec, O open, L link, C connect, S syscall
    head: dict[str, int | str]
    fields: list[str]
    text: str = ""  # the free-form string
    argv: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return int(self.head["ktime"]), int(self.head["tid"])


@dataclass
class Heartbeat:
    ktime: int


@dataclass
class Lost:
    count: int


def _comm(raw: str) -> str:
    """bpftrace's %r escapes non-printable bytes as \\xNN; the name is padded with NULs."""
    data = ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)
    return data.split("\0", 1)[0]


def decode(line: str) -> Record | Heartbeat | Lost | tuple[int, int, int, str] | str | None:
    """One line of output: a Record, a Heartbeat, Lost events, an argument (ktime, tid, index, text), "READY", or
    None for anything else (which is never trusted as a record)."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("type") == "lost_events":
        data = message.get("data")
        return Lost(int(data.get("events", 0)) if isinstance(data, dict) else 0)
    text = message.get("data")
    if message.get("type") != "printf" or not isinstance(text, str) or not text.endswith("\n"):
        return None
    text = text[:-1]
    kind = text[:1]
    try:
        if text == "READY":
            return "READY"
        if kind == "H":
            return Heartbeat(int(text.split("\t")[1]))
        if kind == "A":
            _, ktime, tid, index, arg = text.split("\t", 4)
            return int(ktime), int(tid), int(index), arg
        if kind not in TAIL_FIELDS:
            return None
        tail = TAIL_FIELDS[kind]
        has_text = kind != "S"
        parts = text.split("\t", len(HEAD_FIELDS) + tail + (1 if has_text else 0))
        head_values = parts[1:1 + len(HEAD_FIELDS)]
        head: dict[str, int | str] = {name: int(value) for name, value in zip(HEAD_FIELDS[:-1], head_values[:-1])}
        head["comm"] = _comm(head_values[-1])
        rest = parts[1 + len(HEAD_FIELDS):]
        if kind == "S":
            return Record(kind, head, rest)
        if len(rest) != tail + 1:
            return None
        return Record(kind, head, rest[:tail], rest[tail])
    except (ValueError, IndexError):
        return None


class ExecAssembler:
    """Joins exec records with their arguments. An exec is complete when a record of the same thread that is not
    one of its arguments arrives, or after `max_age` seconds of output (its arguments come right after it)."""

    def __init__(self) -> None:
        self.open: dict[tuple[int, int], Record] = {}

    def start(self, record: Record) -> list[Record]:
        done = [r for key, r in list(self.open.items()) if key[1] == record.key[1]]
        for r in done:
            del self.open[r.key]
        self.open[record.key] = record
        return done

    def argument(self, ktime: int, tid: int, index: int, text: str) -> None:
        record = self.open.get((ktime, tid))
        if record is None or index != len(record.argv) or index > MAX_ARGS:
            return  # an argument of no exec we know, or out of order: dropped, never guessed
        record.argv.append(text)

    def flush(self, before_ktime: int | None = None) -> list[Record]:
        """Execs started before `before_ktime` (all when None)."""
        done = [r for key, r in self.open.items() if before_ktime is None or key[0] < before_ktime]
        for r in done:
            del self.open[r.key]
        return done
