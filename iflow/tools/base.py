"""What a tool is: a name, a description, a JSON schema for its arguments and an async function over a backend."""
from __future__ import annotations

import posixpath
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from iflow.backends.base import TOOLS_SESSION, ToolsBackend


class ToolError(Exception):
    """A tool could not do what was asked. The message is shown to the model as the observation."""


@dataclass
class ToolResult:
    output: str
    is_error: bool = False
    ends_episode: bool = False
    submission: str | None = None
    diff: str | None = None  # a unified diff of an edit, for display


@dataclass
class ToolContext:
    backend: ToolsBackend
    command_timeout: float = 60.0

    def resolve(self, path: Any) -> str:
        """A path argument made absolute against the workspace."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError(f"path must be a non-empty string, got {path!r}")
        path = path.strip()
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.backend.workdir, path))

    async def helper(self, command: str, timeout: float | None = None):
        """Run an internal command in the tools session (never the model's shell)."""
        return await self.backend.run(command, timeout=timeout or self.command_timeout, session=TOOLS_SESSION)

    async def kind(self, path: str) -> str:
        """'file', 'dir', 'other' or 'missing' (symbolic links followed)."""
        quoted = shlex.quote(path)
        result = await self.helper(f"if [ -d {quoted} ]; then echo dir; elif [ -f {quoted} ]; then echo file; "
                                   f"elif [ -e {quoted} ]; then echo other; else echo missing; fi")
        answer = result.output.strip().splitlines()[-1:] or ["missing"]
        return answer[0] if answer[0] in ("file", "dir", "other", "missing") else "missing"


def path_operand(path: str) -> str:
    """A path as a shell-quoted command operand that no command can take for an option or an expression: a path
    starting with `-`, `(`, `)`, `!` or `,` gets a `./` prefix (for `find`, which has no `--` before its paths,
    `-delete` or `!` would be expression)."""
    if path.startswith(("-", "(", ")", "!", ",")):
        path = "./" + path
    return shlex.quote(path)


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], ToolContext], Awaitable[ToolResult]]
    read_only: bool = False
    examples: list[str] = field(default_factory=list)
    path_argument: str | None = None  # the argument naming the path the tool reads or writes (default ".")

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool form."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def object_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
