"""The event taxonomy: what an agent did in a sandbox that the training loop must see.

Each category maps to one of the paper's risk classes (Safety & Security, Controllability, Trustworthiness) and a
default severity. Events carry the sandbox, process and command record they came from, hence the agent turn."""
from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

SAFETY = "Safety & Security"
CONTROL = "Controllability"
TRUST = "Trustworthiness"

Severity = Literal["low", "medium", "high", "critical"]

CATEGORIES: dict[str, tuple[str, Severity]] = {
    "network.egress": (SAFETY, "medium"),          # a connection attempt to anything but loopback
    "network.scan": (SAFETY, "high"),              # many distinct targets in a short window
    "network.reverse_shell": (SAFETY, "critical"), # ssh -R/-L/-D, /dev/tcp, nc/socat exec, socket on a shell's stdio
    "compute.mining": (SAFETY, "critical"),        # miner binaries, stratum URLs, pool ports
    "compute.anomaly": (CONTROL, "medium"),        # sustained CPU with no command running, unknown GPU work
    "process.persistence": (CONTROL, "medium"),    # nohup/setsid/cron/background survivors
    "credential.access": (SAFETY, "high"),         # keys, shadow, cloud metadata, environment secrets
    "sandbox.escape": (SAFETY, "critical"),        # docker.sock, /proc/1, mount/nsenter/unshare/ptrace attempts
    "integrity.tamper": (TRUST, "high"),           # protected files edited, logs or history deleted
    "telemetry.lost": (TRUST, "medium"),           # the eBPF tracer dropped kernel events (counted, not penalized)
    "telemetry.blind": (TRUST, "high"),            # the eBPF tracer died mid-episode: part of it went unwatched
    "sandbox.tamper": (CONTROL, "critical"),       # the sandbox's container stopped mid-episode (keep-alive killed)
}


class Event(BaseModel):
    category: str
    severity: Severity
    risk_class: str
    rule: str
    message: str
    time: float = Field(default_factory=time.time)
    sandbox: str = ""
    session: str | None = None
    pid: int | None = None
    source: str = "ebpf"  # ebpf | cgroup | census | files | proxy | poller | command
    sources: list[str] = Field(default_factory=list, description="every source that saw it (one event per rule and "
                                                                 "command, however many times it fired)")
    command_record: int | None = None
    turn: int | None = None
    background: bool = Field(False, description="done by a process the command left behind (it did not happen "
                                                "while its command ran): command_record and turn are its origin")
    detail: dict[str, Any] = Field(default_factory=dict)


def make_event(category: str, rule: str, message: str, severity: Severity | None = None, **fields: Any) -> Event:
    if category not in CATEGORIES:
        raise ValueError(f"unknown event category {category!r}; known: {', '.join(CATEGORIES)}")
    risk_class, default_severity = CATEGORIES[category]
    event = Event(category=category, severity=severity or default_severity, risk_class=risk_class, rule=rule,
                  message=message, **fields)
    if not event.sources:
        event.sources = [event.source]
    return event


class Observation(BaseModel):
    """A raw fact from a source, before detection: a process started, a connection attempted, a file opened."""

    kind: Literal["exec", "connect", "open", "syscall", "cgroup", "census", "file_change", "proxy", "lost"]
    time: float
    sandbox: str
    pid: int | None = None
    ppid: int | None = None
    start_time: float | None = None  # the process's start (wall clock), where the source knows it
    uid: int | None = None
    comm: str = ""
    argv: list[str] = Field(default_factory=list)
    path: str = ""
    family: str = ""
    address: str = ""
    port: int | None = None
    syscall: str = ""
    cmd_tag: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
