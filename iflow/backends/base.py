"""Where tools run. Two implementations: a ROCK sandbox (`RockBackend`) and the user's own directory
(`LocalBackend`). Both speak the ROCK vocabulary: commands return `rock.records.CommandResult`, and every command
lands in an `AuditLog` of `CommandRecord`s that the agent slices per turn."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from rock.records import AuditLog, CommandResult

DEFAULT_SESSION = "default"   # the model's bash session: cd / export persist across turns
TOOLS_SESSION = "iflow-tools"  # internal helper commands (search, listings, diffs) never disturb the model's shell


@runtime_checkable
class ToolsBackend(Protocol):
    workdir: str
    audit: AuditLog

    async def run(self, command: str, timeout: float | None = None, session: str = DEFAULT_SESSION) -> CommandResult:
        ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes | str) -> None: ...


def as_backend(tools: object) -> ToolsBackend:
    """Accept a backend, or a bare `rock.AsyncSandbox` (wrapped in a `RockBackend`)."""
    if isinstance(tools, ToolsBackend):
        return tools
    if all(hasattr(tools, name) for name in ("run", "read_file", "write_file", "audit", "config")):
        from iflow.backends.rock_backend import RockBackend

        return RockBackend(tools)  # type: ignore[arg-type]
    raise TypeError(f"not a tools backend: {type(tools).__name__} (expected a ToolsBackend or a rock.AsyncSandbox)")
