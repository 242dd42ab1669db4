"""The local backend (`--sandbox none`): persistent bash sessions, timeouts that kill, capped output, audit records."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from iflow.backends import LocalBackend, RockBackend, as_backend
from iflow.backends.local_shell import cap_head_tail


async def test_sessions_are_persistent_and_separate(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    async with LocalBackend(tmp_path) as backend:
        await backend.run("cd sub; export X=1")
        await backend.run("cd /", session="other")
        assert (await backend.run("pwd; echo $X")).output.split() == [str(tmp_path / "sub"), "1"]
        assert (await backend.run("pwd; echo ${X:-unset}", session="other")).output.split() == ["/", "unset"]


async def test_stdin_is_closed_and_syntax_errors_do_not_wedge_the_session(tmp_path: Path):
    async with LocalBackend(tmp_path, command_timeout=5) as backend:
        started = time.monotonic()
        assert (await backend.run("cat; echo after")).output == "after\n"
        assert time.monotonic() - started < 4
        broken = await backend.run("if then fi (")
        assert broken.exit_code != 0 and "syntax error" in broken.output
        assert (await backend.run("echo still here")).output == "still here\n"


async def test_exit_restarts_the_shell_in_the_last_directory(tmp_path: Path):
    async with LocalBackend(tmp_path) as backend:
        await backend.run("cd /tmp; export GONE=1")
        gone = await backend.run("exit 4")
        assert gone.session_restarted
        assert (await backend.run("pwd; echo ${GONE:-unset}")).output.split() == ["/tmp", "unset"]


async def test_timeout_kills_the_command_and_its_children(tmp_path: Path):
    async with LocalBackend(tmp_path) as backend:
        result = await backend.run("sleep 300 & echo $! > child.pid; sleep 300", timeout=3)
        assert result.timed_out and result.exit_code is None
        child = int((tmp_path / "child.pid").read_text())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not gone_or_zombie(child):
            await asyncio.sleep(0.05)
        assert gone_or_zombie(child)
        assert (await backend.run("echo alive")).output == "alive\n"


async def test_long_output_is_cut_to_head_and_tail(tmp_path: Path):
    async with LocalBackend(tmp_path, max_output_bytes=4096) as backend:
        result = await backend.run("seq 1 200000")
        assert result.output.startswith("1\n2\n3\n") and result.output.rstrip().endswith("200000")
        assert "bytes of output cut" in result.output and result.truncated_bytes > 1_000_000
        assert len(result.output) < 6000


def gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_cap_head_tail():
    assert cap_head_tail(b"short", 10) == ("short", 0)
    text, cut = cap_head_tail(b"a" * 50 + b"b" * 50, 20)
    assert text.startswith("a" * 10) and text.endswith("b" * 10) and cut == 80


async def test_commands_are_audited_with_tags(tmp_path: Path):
    async with LocalBackend(tmp_path) as backend:
        mark = backend.audit.mark()
        backend.audit.set_tags(turn=2)
        await backend.run("echo hi")
        records = backend.audit.since(mark)
        assert [(r.command, r.exit_code, r.tags, r.sandbox) for r in records] == [("echo hi", 0, {"turn": 2}, "local")]


async def test_files_and_errors(tmp_path: Path):
    async with LocalBackend(tmp_path) as backend:
        await backend.write_file("a/b.txt", "x")
        assert await backend.read_file(str(tmp_path / "a/b.txt")) == b"x"
        with pytest.raises(FileNotFoundError):
            await backend.read_file("missing")
        with pytest.raises(TypeError, match="command must be a string"):
            await backend.run(["ls"])  # type: ignore[arg-type]
    with pytest.raises(NotADirectoryError, match="not a directory"):
        LocalBackend(tmp_path / "nope")


def test_as_backend_wraps_a_sandbox_and_rejects_other_things(tmp_path: Path):
    local = LocalBackend(tmp_path)
    assert as_backend(local) is local

    class SandboxShaped:  # duck-typed like rock.AsyncSandbox (a real one is used in the Docker tests)
        config = type("Config", (), {"workdir": "/w", "command_timeout": 5.0})()
        audit = local.audit

        async def run(self, *args, **kwargs): ...
        async def read_file(self, path): ...
        async def write_file(self, path, data, mode=0o644): ...

    wrapped = as_backend(SandboxShaped())
    assert isinstance(wrapped, RockBackend) and wrapped.workdir == "/w" and wrapped.command_timeout == 5.0
    with pytest.raises(TypeError, match="not a tools backend"):
        as_backend(os)
