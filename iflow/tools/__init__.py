from iflow.tools.base import Tool, ToolContext, ToolError, ToolResult
from iflow.tools.registry import ALL_TOOLS, DEFAULT_TOOL_NAMES, ToolRegistry

__all__ = ["ALL_TOOLS", "DEFAULT_TOOL_NAMES", "Tool", "ToolContext", "ToolError", "ToolRegistry", "ToolResult"]
