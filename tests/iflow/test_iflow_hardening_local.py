"""Attacks on the tools with `--sandbox none` (the local backend, in a temporary directory): option injection,
huge files, leaked credentials, processes that escape a timeout, reads outside the workspace, unsavable text."""
from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import time
from pathlib import Path

import pytest
from iflow_doubles import ScriptedMessagePolicyDouble, tool_call_text
from iflow_helpers import git

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig
from iflow.parsing import parse_completion
from iflow.sessions import SessionStore
from iflow.tools import ToolContext, ToolRegistry
from iflow.trajectory import ToolCall, Trajectory, Turn, load_jsonl, save_jsonl

REGISTRY = ToolRegistry.from_names()
SPARSE_SIZE = 50 * 1024**3

# One call per tool that builds a command line, each with option-like arguments where a path or pattern goes.
OPTION_ATTACKS = [
    ("search", {"pattern": "*", "path": "-delete", "mode": "files"}),
    ("search", {"pattern": "-delete", "mode": "files"}),
    ("search", {"pattern": "*", "path": "!", "mode": "files"}),
    ("search", {"pattern": "x", "path": "-delete"}),
    ("search", {"pattern": "-r", "path": "--include=*"}),
    ("view", {"path": "-delete"}),
    ("create", {"path": "-delete", "file_text": "x"}),
    ("create", {"path": "--/-delete/f", "file_text": "x"}),
    ("str_replace", {"path": "-delete", "old_str": "a", "new_str": "b"}),
    ("insert", {"path": "-delete", "insert_line": 0, "new_str": "x"}),
    ("submit", {"summary": "-delete"}),
]


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if ".git" not in path.parts}


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A workspace holding files that a `find -delete` would remove."""
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "src" / "keep.py").write_text("print('keep')\n")
    (root / "README").write_text("important\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    return root


@pytest.mark.parametrize(("name", "arguments"), OPTION_ATTACKS, ids=[f"{n}-{i}" for i, (n, _) in
                                                                      enumerate(OPTION_ATTACKS)])
async def test_option_like_arguments_delete_nothing(victim: Path, name: str, arguments: dict):
    before = files_under(victim)
    async with LocalBackend(victim, command_timeout=20) as backend:
        await REGISTRY.execute(ToolCall(name=name, arguments=arguments), ToolContext(backend, 20))
    after = files_under(victim)
    assert before <= after, f"{name} {arguments} deleted {sorted(before - after)}"


async def test_search_with_an_option_like_path_still_searches(victim: Path):
    (victim / "-delete").mkdir()
    (victim / "-delete" / "found.txt").write_text("needle\n")
    async with LocalBackend(victim, command_timeout=20) as backend:
        ctx = ToolContext(backend, 20)
        files = await REGISTRY.execute(ToolCall(name="search", arguments={"pattern": "*.txt", "path": "-delete",
                                                                          "mode": "files"}), ctx)
        content = await REGISTRY.execute(ToolCall(name="search", arguments={"pattern": "needle",
                                                                            "path": "-delete"}), ctx)
    assert not files.is_error and files.output == "./-delete/found.txt"
    assert not content.is_error and "found.txt:1:needle" in content.output
    assert (victim / "src" / "keep.py").exists()


async def test_sparse_50g_file_is_refused_before_reading(victim: Path):
    big = victim / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(SPARSE_SIZE)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with LocalBackend(victim, command_timeout=30) as backend:
        ctx = ToolContext(backend, 30)
        started = time.monotonic()
        viewed = await REGISTRY.execute(ToolCall(name="view", arguments={"path": "big.bin"}), ctx)
        edited = await REGISTRY.execute(ToolCall(name="str_replace", arguments={
            "path": "big.bin", "old_str": "a", "new_str": "b"}), ctx)
        submitted = await REGISTRY.execute(ToolCall(name="submit", arguments={}), ctx)
        elapsed = time.monotonic() - started
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert viewed.is_error and "too large" in viewed.output and str(SPARSE_SIZE) in viewed.output
    assert edited.is_error and "too large" in edited.output
    assert submitted.is_error and not submitted.ends_episode and "big.bin" in submitted.output
    assert rss_growth_kib < 64 * 1024 and elapsed < 20


async def test_backend_reads_are_capped_and_never_block_on_a_fifo(tmp_path: Path):
    (tmp_path / "f.txt").write_bytes(b"x" * 1000)
    os.mkfifo(tmp_path / "pipe")
    async with LocalBackend(tmp_path) as backend:
        assert await backend.read_file("f.txt", limit=1000) == b"x" * 1000
        with pytest.raises(OSError, match="too large"):
            await backend.read_file("f.txt", limit=999)
        with pytest.raises(OSError, match="not a regular file"):
            await asyncio.wait_for(backend.read_file("pipe"), 5)


async def test_credentials_are_not_passed_to_commands(tmp_path: Path, monkeypatch):
    credentials = {"SERVICE_API_KEY": "sk-leak-1", "OPENAI_ORG": "org-leak-2", "AWS_SECRET_ACCESS_KEY": "leak-3",
               "GITHUB_TOKEN": "ghp-leak-4", "HF_TOKEN": "hf-leak-5", "DB_PASSWORD": "leak-6",
                   "SECRET_KEY": "leak-9", "GOOGLE_APPLICATION_CREDENTIALS": "/leak-10.json"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HARMLESS_SETTING", "kept-7")
    async with LocalBackend(tmp_path, env={"GIVEN_ON_PURPOSE_TOKEN": "given-8"}) as backend:
        output = (await backend.run("env")).output
    assert not [value for value in credentials.values() if value in output]
    assert "HARMLESS_SETTING=kept-7" in output and "GIVEN_ON_PURPOSE_TOKEN=given-8" in output


def processes_with(argument: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `argument`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if argument.encode() in (entry / "cmdline").read_bytes() and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def wait_until_gone(argument: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while processes_with(argument) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return processes_with(argument)


def unique_seconds() -> str:
    """A sleep duration no other process on the machine has in its command line."""
    return f"987.{secrets.randbelow(10**8):08d}"


async def test_timeout_kills_setsid_and_double_forked_escapees(tmp_path: Path):
    seconds = unique_seconds()
    async with LocalBackend(tmp_path) as backend:
        result = await backend.run(f"setsid -f sleep {seconds}1; ( setsid sleep {seconds}2 & ); "
                                   f"( ( sleep {seconds}3 & ) & ); sleep 300", timeout=2)
        assert result.timed_out
        assert await wait_until_gone(seconds) == []
        assert (await backend.run("echo alive")).output == "alive\n"


async def test_closing_the_backend_kills_daemons_of_finished_commands(tmp_path: Path):
    seconds = unique_seconds()
    backend = LocalBackend(tmp_path)
    finished = await backend.run(f"setsid -f sleep {seconds}; echo started")
    assert finished.output == "started\n" and processes_with(seconds)  # a finished command's daemon lives on
    await backend.close()
    assert await wait_until_gone(seconds) == []


async def test_reads_outside_the_workspace_need_approval(tmp_path: Path):
    workspace, outside = tmp_path / "work", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret\n")
    (workspace / "inside.txt").write_text("inside\n")
    (workspace / "link").symlink_to(outside)
    script = [tool_call_text("view", path="inside.txt"), tool_call_text("search", pattern="x"),
              tool_call_text("view", path=str(outside / "secret.txt")), tool_call_text("view", path="link/secret.txt"),
              tool_call_text("search", pattern="secret", path="/"), tool_call_text("search", pattern="s", path="..")]
    asked: list[ToolCall] = []

    async def approver(call: ToolCall) -> bool:
        asked.append(call)
        return False

    async with LocalBackend(workspace, command_timeout=20) as backend:
        agent = Agent(ScriptedMessagePolicyDouble(script, fallback="done"), backend,
                      AgentConfig(max_turns=len(script), approval_mode="plan"), approver=approver)
        trajectory = await agent.run("look around")
    assert [call.arguments.get("path") for call in asked] == [str(outside / "secret.txt"), "link/secret.txt", "/",
                                                              ".."]
    assert "inside" in trajectory.turns[0].observation
    assert not any("outside secret" in turn.observation for turn in trajectory.turns)


async def test_a_lone_surrogate_in_a_tool_call_can_be_saved_and_loaded(tmp_path: Path):
    parsed = parse_completion('<tool_call>\n{"name": "bash", "arguments": {"command": "echo \\ud800"}}\n</tool_call>')
    call = parsed.call
    assert "\ud800" in call.arguments["command"]
    trajectory = Trajectory(id="s1", task="t", turns=[Turn(index=0, tool_call=call, observation="out \udcff")])
    path = SessionStore(tmp_path / "sessions").save(trajectory)
    save_jsonl([trajectory], tmp_path / "all.jsonl")
    assert SessionStore(tmp_path / "sessions").load("s1") == trajectory
    assert list(load_jsonl(tmp_path / "all.jsonl")) == [trajectory]
    assert json.loads(path.read_text())["turns"][0]["tool_call"]["arguments"]["command"] == "echo \ud800"


async def test_auto_edit_mode_asks_before_editing_outside_the_workspace(tmp_path: Path):
    workspace, outside = tmp_path / "work", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    script = [tool_call_text("create", path="inside.txt", file_text="in\n"),
              tool_call_text("create", path=str(outside / "planted.txt"), file_text="out\n"),
              tool_call_text("create", path="../outside/also.txt", file_text="out\n")]
    asked: list[ToolCall] = []

    async def approver(call: ToolCall) -> bool:
        asked.append(call)
        return False

    async with LocalBackend(workspace, command_timeout=20) as backend:
        await Agent(ScriptedMessagePolicyDouble(script, fallback="done"), backend,
                    AgentConfig(max_turns=len(script), approval_mode="auto-edit"), approver=approver).run("edit")
    assert [call.arguments["path"] for call in asked] == [str(outside / "planted.txt"), "../outside/also.txt"]
    assert (workspace / "inside.txt").exists() and not any(outside.iterdir())
