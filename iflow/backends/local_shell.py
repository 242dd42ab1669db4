"""A persistent local bash session (`--sandbox none`): one `bash` child process, commands framed by an end marker.

Each command is `eval`-ed by the session shell with stdin from /dev/null (so it cannot swallow the framing), and the
marker line carries a per-command nonce, the exit status and the working directory. On timeout every descendant of
the shell is killed; if the shell itself does not answer, it is replaced by a fresh one in the last directory.
The shell is a plain `subprocess.Popen` read in a worker thread, so it is bound to no event loop.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import select
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from rock.output import CappedBuffer

MARKER_GRACE_SECONDS = 5.0  # after killing a timed-out command, how long the shell has to print its marker


def cap_head_tail(data: bytes, limit: int) -> tuple[str, int]:
    """Decode `data`, keeping head + tail around a marker when it is longer than `limit` bytes. Returns (text, cut)."""
    buffer = CappedBuffer(limit)
    buffer.feed(data)
    return buffer.render()


@dataclass
class ShellOutput:
    output: str
    exit_code: int | None
    timed_out: bool
    truncated_bytes: int
    duration: float
    session_restarted: bool = False


def _descendants(root: int) -> list[int]:
    """Process ids below `root`, read from /proc (Linux). Empty elsewhere."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _close_streams(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalShell:
    """Not safe for concurrent use: callers serialize commands (the backend holds one lock per session)."""

    def __init__(self, cwd: str, env: dict[str, str] | None = None, max_output_bytes: int = 64 * 1024) -> None:
        self.cwd = cwd
        self.env = {**os.environ, **(env or {}), "PAGER": "cat", "GIT_PAGER": "cat", "TERM": "dumb"}
        self.max_output_bytes = max_output_bytes
        self._proc: subprocess.Popen | None = None
        self._dropped = 0

    def _start(self) -> None:
        self._proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.cwd, env=self.env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True, bufsize=0)
        self._send("exec 2>&1; unset HISTFILE; PS1=; PS2=\n")

    def kill_now(self, close_streams: bool = True) -> None:
        """Kill the shell and everything it started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            children = _descendants(proc.pid)
            _kill(proc.pid)  # the shell first: it must not go on to run anything once its command dies
            for pid in children:
                _kill(pid)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if close_streams:
            _close_streams(proc)

    async def close(self) -> None:
        await asyncio.to_thread(self.kill_now)

    async def run(self, command: str, timeout: float) -> ShellOutput:
        try:
            return await asyncio.to_thread(self._run, command, timeout)
        except asyncio.CancelledError:
            # the framing is lost mid-command: kill the shell (its reader thread then sees EOF and closes the
            # pipes); the next command starts a fresh one
            self.kill_now(close_streams=False)
            raise

    def _run(self, command: str, timeout: float) -> ShellOutput:
        if self._proc is None or self._proc.poll() is not None:
            self.kill_now()
            self._start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        start = time.monotonic()
        marker = f"__IFLOW_{secrets.token_hex(8)}__"
        data = bytearray()
        self._dropped = 0
        try:
            proc.stdin.write(f"eval {shlex.quote(command)} </dev/null\nprintf '\\n{marker} %d %s\\n' $? "
                             f"\"$PWD\"\n".encode())
            proc.stdin.flush()
            status = self._read_until(proc, marker, data, start + timeout)
        except (OSError, ValueError):  # the shell is gone (broken pipe, or closed by a cancellation)
            status = "died"
        timed_out = status is None
        if timed_out:  # kill what the command started; the shell should then print its marker
            for pid in _descendants(proc.pid):
                _kill(pid)
            status = self._read_until(proc, marker, data, time.monotonic() + MARKER_GRACE_SECONDS)
        exit_code = None
        if isinstance(status, tuple):
            exit_code, self.cwd = status[0], status[1] or self.cwd
        elif self._proc is proc:  # the shell exited, or is stuck in a builtin: replace it, in the last directory
            self.kill_now()
            self._start()
        else:  # cancelled meanwhile: the shell was already killed and dropped
            _close_streams(proc)
        text, cut = cap_head_tail(bytes(data), self.max_output_bytes)
        return ShellOutput(text, None if timed_out else exit_code, timed_out, cut + self._dropped,
                           time.monotonic() - start, not isinstance(status, tuple))

    def _send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()

    def _read_until(self, proc: subprocess.Popen, marker: str, data: bytearray,
                    deadline: float) -> tuple[int, str] | str | None:
        """Read output into `data` until the marker line. Returns (exit code, cwd), "died", or None on timeout."""
        assert proc.stdout is not None
        try:
            descriptor = proc.stdout.fileno()
        except ValueError:  # already closed
            return "died"
        needle = f"\n{marker} ".encode()
        while True:
            index = data.find(needle)
            if index >= 0:
                line_end = data.find(b"\n", index + len(needle))
                if line_end >= 0:
                    code_text, _, cwd = data[index + len(needle):line_end].decode("utf-8", "replace").partition(" ")
                    del data[index:]
                    return int(code_text), cwd
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([descriptor], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(descriptor, 65536)
            if not chunk:
                return "died"
            data += chunk
            if len(data) > 64 * self.max_output_bytes:  # bounded memory: keep the head and a generous tail
                keep = self.max_output_bytes
                self._dropped += len(data) - 9 * keep
                del data[keep: len(data) - 8 * keep]
