"""Tools in the user's own directory (`--sandbox none`): persistent local bash sessions and direct file access
(capped; `outside_workspace` tells the agent which paths need the user's approval even for reading).
Commands are recorded in a `rock.records.AuditLog` exactly as a ROCK sandbox records them."""
from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from iflow.backends.base import DEFAULT_SESSION, READ_LIMIT_BYTES, WRITE_LIMIT_BYTES, FileTooLarge
from iflow.backends.local_shell import LocalShell
from rock.records import AuditLog, CommandRecord, CommandResult


class LocalBackend:
    def __init__(self, workdir: str | Path, command_timeout: float = 60.0, max_output_bytes: int = 64 * 1024,
                 env: dict[str, str] | None = None) -> None:
        path = Path(workdir).expanduser().resolve()
        if not path.is_dir():
            raise NotADirectoryError(f"workspace {str(workdir)!r} is not a directory")
        self.workdir = str(path)
        self.command_timeout = command_timeout
        self.max_output_bytes = max_output_bytes
        self.env = env or {}
        self.audit = AuditLog()
        self._shells: dict[str, LocalShell] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the locks belong to one event loop

    async def __aenter__(self) -> LocalBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        shells, self._shells = self._shells, {}
        for shell in shells.values():
            await shell.close()

    async def run(self, command: str, timeout: float | None = None, session: str = DEFAULT_SESSION,
                  tags: dict | None = None) -> CommandResult:
        if not isinstance(command, str):
            raise TypeError(f"command must be a string, got {type(command).__name__}")
        timeout = self.command_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. a second run_sync): the shells live on, new locks
            self._locks, self._loop = {}, loop
        lock = self._locks.setdefault(session, asyncio.Lock())
        async with lock:
            shell = self._shells.get(session)
            if shell is None:
                shell = self._shells[session] = LocalShell(self.workdir, self.env, self.max_output_bytes)
            started_at = time.time()
            out = await shell.run(command, timeout)
        record = self.audit.append(CommandRecord(
            id=-1, sandbox="local", session=session, command=command, started_at=started_at, duration=out.duration,
            exit_code=out.exit_code, timed_out=out.timed_out, output_bytes=len(out.output.encode()),
            truncated_bytes=out.truncated_bytes, tags=dict(tags or {})))
        return CommandResult(output=out.output, exit_code=out.exit_code, timed_out=out.timed_out,
                             duration=out.duration, truncated_bytes=out.truncated_bytes,
                             session_restarted=out.session_restarted, record_id=record.id)

    def _resolve(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else Path(self.workdir) / path

    def outside_workspace(self, path: str) -> bool:
        """Whether `path` (symbolic links resolved) lies outside the workspace."""
        real = os.path.realpath(self._resolve(path))
        return os.path.commonpath([real, self.workdir]) != self.workdir

    async def read_file(self, path: str, limit: int = READ_LIMIT_BYTES) -> bytes:
        target = self._resolve(path)

        def read() -> bytes:
            descriptor = os.open(target, os.O_RDONLY | os.O_NONBLOCK)  # non-blocking: a FIFO must not hang us
            with os.fdopen(descriptor, "rb") as handle:
                info = os.fstat(descriptor)
                if not stat.S_ISREG(info.st_mode):
                    raise IsADirectoryError(f"{path} is not a regular file")
                if info.st_size > limit:
                    raise FileTooLarge(str(path), info.st_size, limit)
                data = handle.read(limit + 1)
            if len(data) > limit:
                raise FileTooLarge(str(path), None, limit)
            return data

        return await asyncio.to_thread(read)

    async def write_file(self, path: str, data: bytes | str) -> None:
        target = self._resolve(path)
        payload = data.encode() if isinstance(data, str) else data
        if len(payload) > WRITE_LIMIT_BYTES:
            raise FileTooLarge(str(path), len(payload), WRITE_LIMIT_BYTES)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)

        await asyncio.to_thread(write)
