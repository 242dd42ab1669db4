"""Stop it while it happens: a critical event (mining, a reverse shell, an escape attempt) kills the command that is
running in the sandbox at once, instead of letting it run until its turn ends. The kill goes through each session's
verified kill path (rock.session -> rock.killer: only processes carrying the command's tag, inside the container);
the event records that it stopped the command and how long after the event's own (kernel) time."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from rock.telemetry.events import Event

log = logging.getLogger("rock.telemetry")

CRITICAL = frozenset({"compute.mining", "network.reverse_shell", "sandbox.escape"})


class CriticalStopper:
    """`sessions()` gives the sandbox's shell sessions (objects with `kill_running() -> bool`)."""

    def __init__(self, sessions: Callable[[], Iterable[object]], categories: Iterable[str] = CRITICAL) -> None:
        self.sessions = sessions
        self.categories = frozenset(categories)

    def act(self, events: list[Event]) -> bool:
        """Kill the running commands if any of `events` is critical; mark those events. True when one was stopped."""
        critical = [e for e in events if e.category in self.categories and not e.detail.get("stopped_command")]
        if not critical:
            return False
        stopped = False
        for session in list(self.sessions()):
            try:
                stopped |= bool(session.kill_running())
            except Exception as exc:  # noqa: BLE001 - a failed kill is logged; the turn-end policy still acts
                log.warning("stopping a command after %s failed: %s", critical[0].category, exc)
        if not stopped:
            return False
        now = time.time()
        for event in critical:
            event.detail.update(stopped_command=True, stopped_at=now, stop_latency_s=round(now - event.time, 6))
        log.warning("rock telemetry stopped the running command in %s: %s (%s)", critical[0].sandbox,
                    critical[0].category, critical[0].rule)
        return True


class SpoolWatcher:
    """A thread that drains the tracer's spool file as records arrive (every `interval` s), so that a critical
    event is acted on within milliseconds of reaching the spool."""

    def __init__(self, name: str, drain: Callable[[], None], interval: float = 0.02) -> None:
        self.name, self.drain, self.interval = name, drain, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"spool-watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain()
            except Exception as exc:  # noqa: BLE001 - one bad read must not end the watch
                log.debug("spool watch %s failed: %s", self.name, exc)
