"""Where tools run. Two implementations: a ROCK sandbox (`RockBackend`) and the user's own directory
(`LocalBackend`). Both speak the ROCK vocabulary: commands return `rock.records.CommandResult`, and every command
lands in an `AuditLog` of `CommandRecord`s that the agent slices per turn."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from rock.records import AuditLog, CommandResult
from rock.transfer import FileTooLarge

READ_LIMIT_BYTES = 16 * 1024 * 1024   # a file a tool reads (a backend's default cap)
WRITE_LIMIT_BYTES = 16 * 1024 * 1024  # a file a tool writes

DEFAULT_SESSION = "default"   # the model's bash session: cd / export persist across turns
TOOLS_SESSION = "iflow-tools"  # internal helper commands (search, listings, diffs) never disturb the model's shell


@runtime_checkable
class ToolsBackend(Protocol):
    workdir: str
    audit: AuditLog

    async def run(self, command: str, timeout: float | None = None, session: str = DEFAULT_SESSION) -> CommandResult:
        ...

    async def read_file(self, path: str, limit: int = READ_LIMIT_BYTES) -> bytes:
        """The file's bytes; FileTooLarge (before reading) when it has more than `limit`."""
        ...

    async def write_file(self, path: str, data: bytes | str) -> None: ...


__all__ = ["DEFAULT_SESSION", "READ_LIMIT_BYTES", "TOOLS_SESSION", "WRITE_LIMIT_BYTES", "FileTooLarge",
           "ToolsBackend"]
