"""Tools in a ROCK sandbox: a thin adapter over `rock.AsyncSandbox` (which already speaks this protocol)."""
from __future__ import annotations

import posixpath
import shlex
from typing import Any

from iflow.backends.base import DEFAULT_SESSION, TOOLS_SESSION
from rock.records import AuditLog, CommandResult


class RockBackend:
    """`sandbox` is a started `rock.AsyncSandbox`; its lifetime belongs to the caller."""

    def __init__(self, sandbox: Any, workdir: str | None = None, command_timeout: float | None = None) -> None:
        self.sandbox = sandbox
        config = getattr(sandbox, "config", None)
        self.workdir = workdir or getattr(config, "workdir", None) or "/workspace"
        self.command_timeout = command_timeout or getattr(config, "command_timeout", 60.0)

    @property
    def audit(self) -> AuditLog:
        return self.sandbox.audit

    async def run(self, command: str, timeout: float | None = None, session: str = DEFAULT_SESSION,
                  tags: dict | None = None) -> CommandResult:
        timeout = self.command_timeout if timeout is None else timeout
        if tags:
            return await self.sandbox.run(command, timeout=timeout, session=session, tags=tags)
        return await self.sandbox.run(command, timeout=timeout, session=session)

    async def read_file(self, path: str) -> bytes:
        return await self.sandbox.read_file(path)

    async def write_file(self, path: str, data: bytes | str) -> None:
        """Write a file, keeping the permission bits of a file that already exists (an edited script stays
        executable)."""
        absolute = path if path.startswith("/") else posixpath.join(self.workdir, path)
        stat = await self.sandbox.run(f"stat -c %a {shlex.quote(absolute)} 2>/dev/null", timeout=30,
                                      session=TOOLS_SESSION)
        mode_text = stat.output.strip()
        if stat.exit_code == 0 and mode_text.isdigit():
            await self.sandbox.write_file(absolute, data, mode=int(mode_text, 8))
        else:
            await self.sandbox.write_file(absolute, data)
