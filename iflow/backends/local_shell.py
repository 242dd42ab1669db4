"""A persistent local bash session (`--sandbox none`): one `bash` child process, spoken to with rock's framing
protocol (`rock.framing`: each command eval-ed by the runner function with stdin from /dev/null, then an end marker
with a per-command nonce, the exit status and the working directory).

The shell gets the user's environment minus credentials (API keys, tokens, cloud secrets: the model's commands
have no business with them). On timeout the shell is told to abandon the command (SIGUSR1) and everything the
command started is killed (`local_kill`: the process tree and what escaped it with `setsid`); if the shell itself
does not answer, it is replaced by a fresh one in the last directory. The shell is a plain `subprocess.Popen` read
in a worker thread, so it is bound to no event loop.
"""
from __future__ import annotations

import asyncio
import fnmatch
import os
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from iflow.backends.local_kill import COMMAND_VARIABLE, SHELL_VARIABLE, kill_command
from rock.framing import Marker, command_line, handshake_line, marker_prefix, new_nonce, take_marker
from rock.output import CappedBuffer
from rock.procfs import CLOCK_TICKS, uptime

MARKER_GRACE_SECONDS = 5.0  # after killing a timed-out command, how long the shell has to print its marker
START_TIMEOUT_SECONDS = 30.0
MARKER_PREFIX = "IFLOW"
# Environment variables never passed to the model's commands (matched case-insensitively).
SECRET_VARIABLE_PATTERNS = (
    "*_API_KEY", "*_APIKEY", "*_KEY", "*_KEYS", "*_TOKEN", "*_TOKEN_*", "*SECRET*", "*PASSWORD*", "*PASSWD*",
    "*_ACCESS_KEY*", "*CREDENTIAL*", "OPENAI_*", "ANTHROPIC_*", "AWS_*", "AZURE_*", "HF_TOKEN*",
    "HUGGING_FACE_HUB_TOKEN", "GH_TOKEN", "SSH_AUTH_SOCK",
)


def is_secret_variable(name: str) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_VARIABLE_PATTERNS)


def scrubbed_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the variables that look like credentials."""
    return {name: value for name, value in environ.items() if not is_secret_variable(name)}


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


def _close_streams(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


def _now_ticks() -> int:
    return int(uptime() * CLOCK_TICKS)


class LocalShell:
    """Not safe for concurrent use: callers serialize commands (the backend holds one lock per session).
    `env` is added to the scrubbed environment as given (a caller may pass a credential on purpose)."""

    def __init__(self, cwd: str, env: dict[str, str] | None = None, max_output_bytes: int = 64 * 1024) -> None:
        self.cwd = cwd
        self.shell_tag = secrets.token_hex(8)
        self.env = {**scrubbed_environment(os.environ), **(env or {}), "PAGER": "cat", "GIT_PAGER": "cat",
                    "TERM": "dumb", SHELL_VARIABLE: self.shell_tag}
        self.max_output_bytes = max_output_bytes
        self._proc: subprocess.Popen | None = None

    def _start(self) -> None:
        proc = self._proc = subprocess.Popen(["bash", "--noprofile", "--norc"], cwd=self.cwd, env=self.env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             start_new_session=True, bufsize=0)
        nonce = new_nonce()
        try:
            self._send(proc, handshake_line(nonce, MARKER_PREFIX))
            answer = self._read_until(proc, marker_prefix(nonce, MARKER_PREFIX), CappedBuffer(4096),
                                      time.monotonic() + START_TIMEOUT_SECONDS)
        except (OSError, ValueError):
            answer = "died"
        if not isinstance(answer, Marker):
            self.kill_now()
            raise RuntimeError(f"the local shell did not start in {self.cwd}")

    def kill_now(self, close_streams: bool = True) -> None:
        """Kill the shell and everything it started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # the shell first: it must not go on to run anything once its command dies
        kill_command(proc.pid, self.shell_tag, None, 0)
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
        assert proc is not None
        start, since_ticks = time.monotonic(), _now_ticks()
        nonce, tag = new_nonce(), secrets.token_hex(6)
        prefix = marker_prefix(nonce, MARKER_PREFIX)
        buffer = CappedBuffer(self.max_output_bytes)
        try:
            self._send(proc, command_line(command, nonce, {COMMAND_VARIABLE: tag}, MARKER_PREFIX))
            answer = self._read_until(proc, prefix, buffer, start + timeout)
        except (OSError, ValueError):  # the shell is gone (broken pipe, or closed by a cancellation)
            answer = "died"
        timed_out = answer is None
        if timed_out:  # abandon the rest of the command, kill what it started; the shell then prints its marker
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
            kill_command(proc.pid, self.shell_tag, tag, since_ticks)
            answer = self._read_until(proc, prefix, buffer, time.monotonic() + MARKER_GRACE_SECONDS)
        exit_code = None
        if isinstance(answer, Marker):
            exit_code, self.cwd = answer.status, answer.rest or self.cwd
        elif self._proc is proc:  # the shell exited, or is stuck: replace it, in the last directory
            exit_code = proc.poll()
            self.kill_now()
            self._start()
        else:  # cancelled meanwhile: the shell was already killed and dropped
            _close_streams(proc)
        text, cut = buffer.render()
        return ShellOutput(text, None if timed_out else exit_code, timed_out, cut, time.monotonic() - start,
                           not isinstance(answer, Marker))

    @staticmethod
    def _send(proc: subprocess.Popen, data: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.flush()

    @staticmethod
    def _read_until(proc: subprocess.Popen, prefix: bytes, buffer: CappedBuffer,
                    deadline: float) -> Marker | str | None:
        """Feed output into `buffer` until the marker line. Returns the marker, "died", or None on timeout."""
        assert proc.stdout is not None
        try:
            descriptor = proc.stdout.fileno()
        except ValueError:  # already closed
            return "died"
        while True:
            marker = take_marker(buffer, prefix)
            if marker is not None:
                return marker
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([descriptor], [], [], min(remaining, 0.5))
            if not ready:
                continue
            chunk = os.read(descriptor, 65536)
            if not chunk:
                return "died"
            buffer.feed(chunk)
