"""`SandboxPool`: sandboxes started ahead of time, handed out in milliseconds, replaced on release.

A released sandbox is never reused (an agent may have left processes, files or history behind): it is removed in
the background and a fresh one is started in its place."""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from rock.aio import AsyncSandbox
from rock.config import SandboxConfig
from rock.sandbox import Sandbox, SandboxError

ACQUIRE_POLL_S = 0.02


class PoolClosed(RuntimeError):
    pass


class _StartFailed:
    """Queued in place of a sandbox whose start failed, so that a waiting acquire() fails now, not at its timeout."""

    def __init__(self, error: str) -> None:
        self.error = error


class SandboxPool:
    def __init__(self, config: SandboxConfig | None = None, size: int = 4, max_starting: int = 4) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.config = config or SandboxConfig()
        self.size = size
        self._ready: queue.Queue[Sandbox | _StartFailed] = queue.Queue()
        self._workers = ThreadPoolExecutor(max_workers=max_starting, thread_name_prefix="rock-pool")
        self._in_use: dict[str, Sandbox] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.errors: list[str] = []
        for _ in range(size):
            self._workers.submit(self._start_one)

    def _start_one(self) -> None:
        if self._closed:
            return
        sandbox = Sandbox(self.config)
        try:
            sandbox.start()
        except Exception as exc:  # noqa: BLE001 - recorded and surfaced by acquire()
            error = f"{type(exc).__name__}: {exc}"
            self.errors.append(error)
            self._ready.put(_StartFailed(error))
            return
        if self._closed:
            sandbox.stop()
        else:
            self._ready.put(sandbox)

    def acquire(self, timeout: float = 120.0) -> Sandbox:
        if self._closed:
            raise PoolClosed("pool is closed")
        try:
            item = self._ready.get(timeout=timeout)
        except queue.Empty:
            raise self._none_ready(timeout) from None
        return self._hand_out(item)

    def _none_ready(self, timeout: float) -> SandboxError:
        detail = f"; last start error: {self.errors[-1]}" if self.errors else ""
        return SandboxError(f"no sandbox became ready within {timeout:.0f}s{detail}")

    def _hand_out(self, item: Sandbox | _StartFailed) -> Sandbox:
        if isinstance(item, _StartFailed):
            if not self._closed:
                self._workers.submit(self._start_one)  # keep the pool at its size for the next caller
            raise SandboxError(f"a pool sandbox failed to start: {item.error}")
        with self._lock:
            self._in_use[item.name] = item
        return item

    def release(self, sandbox: Sandbox, replace: bool = True) -> None:
        with self._lock:
            self._in_use.pop(sandbox.name, None)
        self._workers.submit(sandbox.stop)
        if replace and not self._closed:
            self._workers.submit(self._start_one)

    async def acquire_async(self, timeout: float = 120.0) -> AsyncSandbox:
        """Wait on the event loop, not in a worker thread: episodes waiting for a sandbox in `asyncio.to_thread`
        held asyncio's default executor (cores + 4 threads), so with more episodes in flight than the pool holds the
        running episodes' own sandbox commands queued behind them and the episodes hung."""
        if self._closed:
            raise PoolClosed("pool is closed")
        deadline = time.monotonic() + timeout
        while True:
            try:
                return AsyncSandbox(sandbox=self._hand_out(self._ready.get_nowait()))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise self._none_ready(timeout) from None
                await asyncio.sleep(ACQUIRE_POLL_S)

    async def release_async(self, sandbox: AsyncSandbox, replace: bool = True) -> None:
        await asyncio.to_thread(self.release, sandbox.sync, replace)

    @property
    def ready(self) -> int:
        return sum(isinstance(item, Sandbox) for item in list(self._ready.queue))

    def wait_ready(self, count: int | None = None, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.ready < (count or self.size):
            if time.monotonic() > deadline:
                raise SandboxError(f"pool has {self.ready}/{count or self.size} ready after {timeout:.0f}s")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every sandbox, ready or handed out."""
        self._closed = True
        with self._lock:
            in_use, self._in_use = list(self._in_use.values()), {}
        for sandbox in in_use:
            sandbox.stop()
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Sandbox):
                item.stop()
        self._workers.shutdown(wait=True)

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
