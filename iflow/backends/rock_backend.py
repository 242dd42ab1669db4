"""Tools in a ROCK sandbox: a thin adapter over `rock.AsyncSandbox`. Commands go to its sessions; file reads and
writes too (as the sandbox user, in bounded chunks: `session_files`), never through dockerd's archive API as root."""
from __future__ import annotations

from typing import Any

from iflow.backends import session_files
from iflow.backends.base import DEFAULT_SESSION, READ_LIMIT_BYTES, TOOLS_SESSION, WRITE_LIMIT_BYTES, ToolsBackend
from rock.records import AuditLog, CommandResult

FILE_COMMAND_TIMEOUT = 60.0  # seconds for one chunk of a file transfer


class RockBackend:
    """`sandbox` is a started `rock.AsyncSandbox`; its lifetime belongs to the caller."""

    def __init__(self, sandbox: Any, workdir: str | None = None, command_timeout: float | None = None) -> None:
        self.sandbox = sandbox
        config = getattr(sandbox, "config", None)
        self.workdir = workdir or getattr(config, "workdir", None) or "/workspace"
        self.command_timeout = command_timeout or getattr(config, "command_timeout", 60.0)
        self.max_output_bytes = getattr(config, "max_output_bytes", 64 * 1024)

    @property
    def audit(self) -> AuditLog:
        return self.sandbox.audit

    async def run(self, command: str, timeout: float | None = None, session: str = DEFAULT_SESSION,
                  tags: dict | None = None) -> CommandResult:
        timeout = self.command_timeout if timeout is None else timeout
        if tags:
            return await self.sandbox.run(command, timeout=timeout, session=session, tags=tags)
        return await self.sandbox.run(command, timeout=timeout, session=session)

    async def _tools_command(self, command: str) -> CommandResult:
        return await self.sandbox.run(command, timeout=FILE_COMMAND_TIMEOUT, session=TOOLS_SESSION)

    def _absolute(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.workdir.rstrip('/')}/{path}"

    async def read_file(self, path: str, limit: int = READ_LIMIT_BYTES) -> bytes:
        return await session_files.read_file(self._tools_command, self._absolute(path), limit, self.max_output_bytes)

    async def write_file(self, path: str, data: bytes | str) -> None:
        """Write a file as the sandbox user; a file that already exists keeps its mode (an edited script stays
        executable)."""
        payload = data.encode() if isinstance(data, str) else data
        await session_files.write_file(self._tools_command, self._absolute(path), payload, WRITE_LIMIT_BYTES)


def as_backend(tools: object) -> ToolsBackend:
    """Accept a backend, or a bare `rock.AsyncSandbox` (wrapped in a `RockBackend`)."""
    if isinstance(tools, ToolsBackend):
        return tools
    if all(hasattr(tools, name) for name in ("run", "read_file", "write_file", "audit", "config")):
        return RockBackend(tools)
    raise TypeError(f"not a tools backend: {type(tools).__name__} (expected a ToolsBackend or a rock.AsyncSandbox)")
