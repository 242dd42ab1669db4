"""One session per episode. A session is addressed by a secret token (a path segment `/s/<token>/v1/...` or the
API key), so one sandbox's agent can neither read nor write another episode's record."""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from roll.proxy.records import ProxyCall
from roll.proxy.render import Continuation


class SessionLimit(RuntimeError):
    """The session (or the proxy) is at its limit; the request is refused with 429."""


@dataclass
class Session:
    name: str
    token: str
    calls: list[ProxyCall] = field(default_factory=list)
    in_flight: int = 0
    started: int = 0
    closed: bool = False
    continuation: Continuation | None = None  # the last completed chat call: what a next request may extend
    policy: Any = None  # this episode's engine (None: the proxy's default)
    max_calls: int | None = None  # this episode's own limits (tighter than the proxy's)
    max_completion_tokens: int | None = None
    completion_tokens: int = 0

    def record(self, call: ProxyCall) -> None:
        self.calls.append(call)
        self.completion_tokens += len(call.completion_ids)

    def tokens_left(self) -> int | None:
        if self.max_completion_tokens is None:
            return None
        return max(0, self.max_completion_tokens - self.completion_tokens)


class SessionRegistry:
    """Thread-safe: the episode opens and closes sessions from its loop, the server admits requests in its own."""

    def __init__(self, max_concurrent_per_session: int, max_concurrent_total: int, max_calls_per_session: int) -> None:
        self.per_session = max_concurrent_per_session
        self.total = max_concurrent_total
        self.max_calls = max_calls_per_session
        self._sessions: dict[str, Session] = {}
        self._in_flight = 0
        self._lock = threading.Lock()

    def open(self, name: str, policy: Any = None, max_calls: int | None = None,
             max_completion_tokens: int | None = None) -> Session:
        session = Session(name=name, token=secrets.token_urlsafe(24), policy=policy, max_calls=max_calls,
                          max_completion_tokens=max_completion_tokens)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def close(self, token: str) -> Session | None:
        """Stop admitting requests for the session and forget it; returns it (with its calls)."""
        with self._lock:
            session = self._sessions.pop(token, None)
            if session is not None:
                session.closed = True
            return session

    def get(self, token: str) -> Session | None:
        with self._lock:
            return self._sessions.get(token)

    def admit(self, token: str) -> Session:
        """Count a request in; raises KeyError for an unknown session, SessionLimit when at a limit."""
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.closed:
                raise KeyError(token)
            max_calls = min(self.max_calls, session.max_calls or self.max_calls)
            if session.started >= max_calls:
                raise SessionLimit(f"this session has made its {max_calls} model calls")
            if session.tokens_left() == 0:
                raise SessionLimit("this session has used its completion-token budget")
            if session.in_flight >= self.per_session:
                raise SessionLimit(f"at most {self.per_session} request(s) in flight per session")
            if self._in_flight >= self.total:
                raise SessionLimit("the proxy is at its concurrency limit")
            session.in_flight += 1
            session.started += 1
            self._in_flight += 1
            return session

    def release(self, session: Session) -> None:
        with self._lock:
            session.in_flight -= 1
            self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight
