"""Stop it while it happens: a critical event (mining, a reverse shell, an escape attempt) kills the command that is
running in the sandbox at once, instead of letting it run until its turn ends. The kill goes through each session's
verified kill path (rock.session -> rock.killer: only processes carrying the command's tag, inside the container);
the event records that it stopped the command and how long after the event's own (kernel) time."""
from __future__ import annotations

import logging
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
