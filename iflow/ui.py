"""The terminal UI: streamed answers, tool calls, observations, diffs of edits, and approval prompts (rich)."""
from __future__ import annotations

import asyncio
import json
from typing import TextIO

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from iflow.observer import AgentObserver
from iflow.parsing import parse_text
from iflow.tools.base import ToolResult
from iflow.trajectory import ToolCall, Trajectory, Turn

MAX_SHOWN_LINES = 15


def call_summary(call: ToolCall) -> str:
    args = call.arguments
    if call.name == "bash":
        return f"$ {args.get('command', '')}"
    if call.name in ("view", "create", "str_replace", "insert"):
        extra = f" {args['view_range']}" if "view_range" in args else ""
        return f"{call.name} {args.get('path', '')}{extra}"
    if call.name == "search":
        return f"search {args.get('pattern', '')!r} in {args.get('path', '.')}"
    return f"{call.name} {json.dumps(args, ensure_ascii=False)[:200]}"


def clip(text: str, lines: int = MAX_SHOWN_LINES) -> str:
    rows = text.splitlines()
    return text if len(rows) <= lines else "\n".join(rows[:lines]) + f"\n… ({len(rows) - lines} more lines)"


class TerminalUI(AgentObserver):
    def __init__(self, console: Console | None = None, stdin: TextIO | None = None, verbose: bool = False) -> None:
        self.console = console or Console(highlight=False)
        self.stdin = stdin
        self.verbose = verbose
        self.always: set[str] = set()  # tools the user approved for the rest of the session
        self._streamed = False

    # ---- observer ----------------------------------------------------------------------------------------------
    def on_turn_start(self, index: int) -> None:
        self._streamed = False
        self.console.print(Text(f"── turn {index} ", style="dim"))

    def on_text_delta(self, text: str) -> None:
        self._streamed = True
        self.console.print(Text(text), end="")

    def on_completion(self, turn: Turn) -> None:
        if self._streamed:
            self.console.print()
        else:
            content = parse_text(turn.completion_text).content if turn.tool_call else turn.completion_text
            if content.strip():
                self.console.print(Text(content.strip()))
        if turn.parse_error:
            self.console.print(Text(f"✗ malformed tool call: {turn.parse_error}", style="yellow"))
        elif turn.tool_call:
            self.console.print(Text(f"● {call_summary(turn.tool_call)}", style="bold cyan"))

    def on_tool_result(self, turn: Turn, result: ToolResult) -> None:
        if result.diff:
            self.console.print(Syntax(clip(result.diff, 40), "diff", theme="ansi_dark", background_color="default"))
        style = "red" if result.is_error else "dim"
        self.console.print(Text(clip(result.output, 200 if self.verbose else MAX_SHOWN_LINES), style=style))

    def on_episode_end(self, trajectory: Trajectory) -> None:
        style = "red" if trajectory.outcome == "error" else "green"
        detail = f": {trajectory.error}" if trajectory.error else ""
        self.console.print(Text(f"[{trajectory.outcome}{detail}]", style=style))

    # ---- approval ----------------------------------------------------------------------------------------------
    async def approve(self, call: ToolCall) -> bool | str:
        """Ask before a command or an edit: y = yes, a = always for this tool, anything else = no (the text is
        passed to the model as the reason)."""
        if call.name in self.always:
            return True
        body = call.arguments.get("command") if call.name == "bash" else json.dumps(call.arguments, indent=1,
                                                                                     ensure_ascii=False)
        self.console.print(Panel(clip(str(body), 30), title=f"{call.name} wants to run", border_style="yellow"))
        self.console.print("Allow? [y]es / [n]o (or type a reason) / [a]lways: ", end="")
        answer = await asyncio.to_thread(self._readline)
        if answer is None:
            return "no answer (end of input)"
        answer = answer.strip()
        if answer.lower() in ("y", "yes"):
            return True
        if answer.lower() in ("a", "always"):
            self.always.add(call.name)
            return True
        return answer if answer.lower() not in ("n", "no", "") else False

    def _readline(self) -> str | None:
        import sys

        line = (self.stdin or sys.stdin).readline()
        return line if line else None

    def ask(self, question: str) -> str | None:
        self.console.print(question, end="")
        return self._readline()
