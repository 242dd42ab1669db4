"""Decoding the tracer's bpftrace output (`-f json`). Each JSON object is one record; its text is split on tabs into
fixed fields and, last, at most one free-form string (a path or an argument), so nothing the agent writes can add,
move or end a field. An exec's arguments come as separate `A` records keyed by the exec's (kernel time, thread)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rock.telemetry.bpf import HEAD_FIELDS, MAX_ARGS

ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# kind -> number of fixed fields after the head; the last field (path, address, syscall name) is the rest
TAIL_FIELDS = {"X": 3, "O": 3, "L": 3, "C": 2, "S": 0}


@dataclass
class Record:
    kind: str  # X exec, O open, L link, C connect, S syscall
    head: dict[str, int | str]
    fields: list[str]
    text: str = ""  # the free-form string
    argv: list[str] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)  # what the daemon read about the process on arrival

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


@dataclass
class Part:
    """A piece of a record that comes in its own line, keyed by the record's (kernel time, thread): an argument (A),
    the file an execveat descriptor names (D), a directory name of a relative path's start (W), the walk's end (E)."""
    kind: str
    ktime: int
    tid: int
    index: int
    text: str

    @property
    def key(self) -> tuple[int, int]:
        return self.ktime, self.tid


def decode(line: str) -> Record | Part | Heartbeat | Lost | str | None:
    """One line of output: a Record, a Part, a Heartbeat, Lost events, "READY", or None for anything else (which is
    never trusted as a record)."""
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
            return Part("A", int(ktime), int(tid), int(index), arg)
        if kind in "DWE" and kind:
            _, ktime, tid, rest = text.split("\t", 3)
            return Part(kind, int(ktime), int(tid), 0, rest)
        if kind not in TAIL_FIELDS:
            return None
        tail = TAIL_FIELDS[kind]
        parts = text.split("\t", len(HEAD_FIELDS) + tail + 1)
        head_values = parts[1:1 + len(HEAD_FIELDS)]
        head: dict[str, int | str] = {name: int(value) for name, value in zip(HEAD_FIELDS[:-1], head_values[:-1])}
        head["comm"] = _comm(head_values[-1])
        rest = parts[1 + len(HEAD_FIELDS):]
        if len(rest) != tail + 1:
            return None
        return Record(kind, head, rest[:tail], rest[tail])
    except (ValueError, IndexError):
        return None


def walks_directory(record: Record) -> bool:
    """Whether the kernel follows this record with the directory walk of a relative path (see bpf.py)."""
    cwd_relative = record.kind in ("O", "L") and record.fields[1] == "-100"
    if record.kind == "O":
        return cwd_relative and not record.text.startswith("/")
    if record.kind == "C":
        return record.fields[0] == "unix" and not record.text.startswith(("/", "@"))
    return cwd_relative and record.kind == "L"  # decided on the link's name (both records wait for the walk)


class RecordAssembler:
    """Holds records until their parts have arrived: an exec until the next heartbeat (its arguments follow it at
    once), a relative path until its directory walk ends. Parts of no record held are dropped, never guessed."""

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], list[Record]] = {}

    def start(self, record: Record) -> list[Record]:
        """The records ready now (this one, unless it waits for parts)."""
        if record.kind == "X" or walks_directory(record):
            self.held.setdefault(record.key, []).append(record)
            return []
        return [record]

    def part(self, part: Part) -> list[Record]:
        records = self.held.get(part.key)
        if not records:
            return []
        record = records[-1]
        if part.kind == "A":
            if part.index == len(record.argv) and part.index <= MAX_ARGS:
                record.argv.append(part.text)
        elif part.kind == "D":
            record.context["fd_name"] = part.text
        elif part.kind == "W":
            record.context.setdefault("walk", []).append(part.text)
        elif part.kind == "E":
            names = record.context.pop("walk", [])
            if part.text == "1":  # the walk reached the root: the directory as the process sees it
                for held in records:
                    held.context["kernel_base"] = "/" + "/".join(reversed(names))
            if record.kind != "X":
                return self.held.pop(part.key)
        return []

    def flush(self, before_ktime: int | None = None) -> list[Record]:
        """Records started before `before_ktime` (all when None)."""
        keys = [key for key in self.held if before_ktime is None or key[0] < before_ktime]
        return [record for key in keys for record in self.held.pop(key)]
