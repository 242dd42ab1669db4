"""Rules in data: YAML files of matchers over observations (see rock/rules/default.yaml).

Every regular expression runs on RE2 (linear time in the input, no backtracking), so an agent cannot freeze the
monitor with a crafted command line; RE2 has no lookaround or backreferences, and a rule that needs them is refused
at load time. Inputs longer than `MAX_TEXT` are matched on their head and tail only."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rock.telemetry.events import CATEGORIES, Event, Observation, Severity, make_event

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
MAX_TEXT = 256 * 1024  # characters; a command line longer than this is matched on its first and last halves


@lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def bounded(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    half = MAX_TEXT // 2
    return text[:half] + "\n" + text[-half:]


def search(pattern: str, text: str) -> bool:
    return compile_pattern(pattern).search(bounded(text)) is not None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    category: str
    kind: Literal["exec", "connect", "open", "syscall"]
    severity: Severity | None = None
    argv: str | None = None
    argv_not: str | None = None
    path: str | None = None
    comm: str | None = None
    address: str | None = None
    port: list[int] | None = None
    not_loopback: bool = False
    syscall: list[str] | None = None

    @field_validator("category")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"unknown category {value!r}; known: {', '.join(CATEGORIES)}")
        return value

    @field_validator("argv", "argv_not", "path", "comm", "address")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_pattern(value)
            except re2.error as exc:
                raise ValueError(f"not a linear-time (RE2) regular expression: {exc}") from None
        return value

    def matches(self, obs: Observation) -> bool:
        if obs.kind != self.kind:
            return False
        if self.path is not None and not search(self.path, obs.path):
            return False
        if self.argv is not None or self.argv_not is not None:
            text = " ".join([obs.path, *obs.argv])
            if self.argv is not None and not search(self.argv, text):
                return False
            if self.argv_not is not None and search(self.argv_not, text):
                return False
        if self.comm is not None and not search(self.comm, obs.comm):
            return False
        if self.address is not None and not search(self.address, obs.address):
            return False
        if self.port is not None and obs.port not in self.port:
            return False
        if self.not_loopback and is_loopback(obs.address):
            return False
        return self.syscall is None or obs.syscall in self.syscall

    def event(self, obs: Observation) -> Event:
        what = {"exec": " ".join(obs.argv)[:300], "connect": f"{obs.address}:{obs.port}", "open": obs.path,
                "syscall": obs.syscall}[self.kind]
        return make_event(self.category, self.id, f"{self.kind} {what}", self.severity, time=obs.time,
                          sandbox=obs.sandbox, pid=obs.pid, source="ebpf" if obs.data.get("source") is None
                          else obs.data["source"], detail={"comm": obs.comm, "cmd_tag": obs.cmd_tag, self.kind: what})


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback) or ip.is_unspecified


def load_rules(*paths: str | Path) -> list[Rule]:
    """The default rules plus any user files. A bad rule stops with its file, index and field."""
    rules = []
    for path in (DEFAULT_RULES, *paths):
        document = yaml.safe_load(Path(path).read_text()) or {}
        for index, raw in enumerate(document.get("rules", [])):
            try:
                rules.append(Rule.model_validate(raw))
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{path}: rules[{index}] ({raw.get('id', '?')}): {problems}") from None
    return rules
