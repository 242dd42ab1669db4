"""The terminal UI: approval answers, and what an episode looks like on screen (tool calls, diffs, outcome)."""
from __future__ import annotations

import io
from pathlib import Path

from iflow_doubles import ScriptedMessagePolicyDouble, tool_call_text
from rich.console import Console

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig
from iflow.trajectory import ToolCall
from iflow.ui import TerminalUI, call_summary

BASH = ToolCall(name="bash", arguments={"command": "rm -rf build"})


def ui_with(answers: str) -> tuple[TerminalUI, io.StringIO]:
    screen = io.StringIO()
    return TerminalUI(Console(file=screen, width=100, color_system=None), stdin=io.StringIO(answers)), screen


async def test_approval_answers():
    ui, screen = ui_with("y\nn\n\nnot now, run the tests first\na\n")
    assert await ui.approve(BASH) is True
    assert await ui.approve(BASH) is False
    assert await ui.approve(BASH) is False  # a bare Enter is a no
    assert await ui.approve(BASH) == "not now, run the tests first"
    assert await ui.approve(BASH) is True and "bash" in ui.always
    assert await ui.approve(BASH) is True  # always: not asked again
    assert await ui.approve(BASH) is True
    assert screen.getvalue().count("wants to run") == 5 and "rm -rf build" in screen.getvalue()
    assert await ui_with("")[0].approve(BASH) == "no answer (end of input)"


async def test_an_episode_on_screen(bug_repo: Path):
    ui, screen = ui_with("y\n")
    script = ["Looking first.\n" + tool_call_text("view", path="stats.py"),
              tool_call_text("str_replace", path="stats.py", old_str="(len(values) + 1)", new_str="len(values)"),
              "<tool_call>{oops", tool_call_text("submit")]
    async with LocalBackend(bug_repo) as backend:
        trajectory = await Agent(ScriptedMessagePolicyDouble(script), backend, AgentConfig(approval_mode="default"),
                                 approver=ui.approve, observer=ui).run("Fix it.")
    text = screen.getvalue()
    assert trajectory.outcome == "submitted"
    for expected in ["── turn 0", "Looking first.", "● view stats.py", "def mean(values):", "● str_replace stats.py",
                     "-    return sum(values) / (len(values) + 1)", "+    return sum(values) / len(values)",
                     "✗ malformed tool call", "● submit", "[submitted]"]:
        assert expected in text, expected


def test_call_summaries():
    assert call_summary(BASH) == "$ rm -rf build"
    assert call_summary(ToolCall(name="view", arguments={"path": "a.py", "view_range": [1, 5]})) == "view a.py [1, 5]"
    assert call_summary(ToolCall(name="search", arguments={"pattern": "x"})) == "search 'x' in ."
