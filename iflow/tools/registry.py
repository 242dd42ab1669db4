"""The set of tools an agent offers: their schemas (for the system prompt / the API) and checked execution."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from iflow.tools.base import Tool, ToolContext, ToolError, ToolResult
from iflow.tools.files import CREATE, INSERT, STR_REPLACE, VIEW
from iflow.tools.schema import validate_arguments
from iflow.tools.shell import BASH, SEARCH, SUBMIT
from iflow.trajectory import ToolCall

ALL_TOOLS: dict[str, Tool] = {tool.name: tool for tool in (BASH, VIEW, CREATE, STR_REPLACE, INSERT, SEARCH, SUBMIT)}
DEFAULT_TOOL_NAMES = tuple(ALL_TOOLS)


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self.tools:
                raise ValueError(f"duplicate tool name {tool.name!r}")
            self.tools[tool.name] = tool

    @classmethod
    def from_names(cls, names: Iterable[str] = DEFAULT_TOOL_NAMES, read_only: bool = False) -> ToolRegistry:
        """Pick tools by name; `read_only` keeps only tools that change nothing (plan mode), plus submit."""
        names = list(names)
        unknown = [name for name in names if name not in ALL_TOOLS]
        if unknown:
            raise ValueError(f"unknown tool name(s) {unknown}; available: {', '.join(ALL_TOOLS)}")
        return cls(ALL_TOOLS[name] for name in names if not read_only or ALL_TOOLS[name].read_only)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self.tools.values()]

    def check(self, call: ToolCall) -> str | None:
        """None when the call names a known tool with valid arguments; else a message for the model."""
        tool = self.tools.get(call.name)
        if tool is None:
            return f"unknown tool {call.name!r}; available tools: {', '.join(self.tools)}"
        return validate_arguments(call.name, call.arguments, tool.parameters)

    def touches_outside(self, call: ToolCall, backend: object | None) -> bool:
        """Whether the call's path lies outside the workspace, on a backend that can tell (`outside_workspace`: the
        user's own machine; in a sandbox every path is the sandbox's)."""
        tool = self.tools.get(call.name)
        outside = getattr(backend, "outside_workspace", None)
        if tool is None or outside is None or tool.path_argument is None:
            return False
        path = call.arguments.get(tool.path_argument) or "."
        return not isinstance(path, str) or outside(path.strip() or ".")

    def is_read_only(self, call: ToolCall, backend: object | None = None) -> bool:
        """Whether the call changes nothing and so may run without asking. On the user's own machine a read
        outside the workspace needs approval like any other call."""
        tool = self.tools.get(call.name)
        return bool(tool and tool.read_only) and not self.touches_outside(call, backend)

    async def execute(self, call: ToolCall, ctx: ToolContext) -> ToolResult:
        """Run a checked call. Tool failures become error results; nothing but cancellation escapes."""
        error = self.check(call)
        if error:
            return ToolResult(error, is_error=True)
        try:
            return await self.tools[call.name].run(call.arguments, ctx)
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", is_error=True)
        except Exception as exc:  # noqa: BLE001 - a broken tool is an observation, not a crash
            return ToolResult(f"Error: {call.name} failed: {type(exc).__name__}: {exc}", is_error=True)
