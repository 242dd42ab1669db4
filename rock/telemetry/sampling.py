"""The monitor's background thread: every `interval` seconds, one tick of the periodic checks (CPU, process census,
the degraded poller); what a tick finds goes to `sink`. A failing tick is logged and the next one runs."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rock.telemetry.events import Event

log = logging.getLogger("rock.telemetry")


class Sampler:
    def __init__(self, name: str, interval: float, tick: Callable[[], list[Event] | None],
                 sink: Callable[[list[Event]], None]) -> None:
        self.name, self.interval, self.tick, self.sink = name, interval, tick, sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"monitor-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                found = self.tick()
            except Exception as exc:  # noqa: BLE001 - a sampling hiccup must not kill the monitor
                log.debug("sampling %s failed: %s", self.name, exc)
                continue
            if found is None:  # the sandbox is gone
                return
            if found:
                self.sink(found)
