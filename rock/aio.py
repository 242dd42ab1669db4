"""`AsyncSandbox`: the asyncio flavour. Each blocking Docker call runs in a worker thread."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rock.cgroups import CgroupStats
from rock.config import SandboxConfig
from rock.records import AuditLog, CommandResult
from rock.sandbox import Sandbox


class AsyncSandbox:
    def __init__(self, config: SandboxConfig | None = None, sandbox: Sandbox | None = None, **overrides: Any) -> None:
        self.sync = sandbox if sandbox is not None else Sandbox(config, **overrides)

    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def id(self) -> str:
        return self.sync.id

    @property
    def config(self) -> SandboxConfig:
        return self.sync.config

    @property
    def audit(self) -> AuditLog:
        return self.sync.audit

    async def start(self) -> "AsyncSandbox":
        await asyncio.to_thread(self.sync.start)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self.sync.stop)

    async def quarantine(self) -> str:
        return await asyncio.to_thread(self.sync.quarantine)

    async def __aenter__(self) -> "AsyncSandbox":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self, command: str, timeout: float | None = None, session: str = "default",
                  tags: dict[str, Any] | None = None) -> CommandResult:
        return await asyncio.to_thread(self.sync.run, command, timeout, session, tags)

    async def exec(self, argv: list[str], user: str | None = None, timeout: float = 60.0) -> tuple[int, str]:
        return await asyncio.to_thread(self.sync.exec, argv, user, timeout)

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(self.sync.read_file, path)

    async def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        await asyncio.to_thread(self.sync.write_file, path, data, mode)

    async def upload(self, local: str | Path, remote: str) -> None:
        await asyncio.to_thread(self.sync.upload, local, remote)

    async def download(self, remote: str, local: str | Path) -> None:
        await asyncio.to_thread(self.sync.download, remote, local)

    async def stats(self) -> CgroupStats:
        return await asyncio.to_thread(self.sync.stats)

    async def processes(self) -> list[dict[str, str]]:
        return await asyncio.to_thread(self.sync.processes)
