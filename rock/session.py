"""A persistent bash session inside a container, kept open over one `docker exec` socket.

Each command is sent ANSI-C quoted and `eval`-ed by the session shell (so `cd` and `export` persist and a syntax
error cannot wedge the framing), with stdin from /dev/null, and framed by an end marker carrying a per-command nonce,
the exit status and the working directory. Every command runs with `ROCK_CMD=<tag>` in its environment: on timeout,
every process carrying that tag or descending from the shell is killed, so nothing the command started survives.
Only processes verified to be in the container are ever signalled (see rock.killer); the protocol is rock.framing.
"""
from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass

import docker

from rock.cgroups import cgroup_procs
from rock.framing import command_line, demux, handshake_line, marker_prefix, new_nonce, ping_line, take_marker
from rock.killer import (SESSION_VARIABLE, in_container, kill_from_host, kill_in_container, kill_shell, start_exec,
                         uptime)
from rock.output import CappedBuffer
from rock.procfs import innermost_pid, read_stat


class SessionDied(RuntimeError):
    pass


@dataclass
class RawResult:
    output: str
    exit_code: int | None
    timed_out: bool
    truncated_bytes: int
    duration: float
    session_restarted: bool = False
    cmd_tag: str = ""


class ShellSession:
    """One named bash process in a container. Not thread-safe: the Sandbox serializes calls per session."""

    def __init__(self, api: docker.APIClient, container_id: str, name: str, user: str, workdir: str,
                 env: dict[str, str], max_output_bytes: int) -> None:
        self.api = api
        self.container_id = container_id
        self.name = name
        self.user = user
        self.workdir = workdir
        self.env = env
        self.max_output_bytes = max_output_bytes
        self.cwd = workdir
        self.pid: int | None = None  # the shell's pid inside the container
        self.running: tuple[str, float] | None = None  # (ROCK_CMD tag, start uptime) of the command now running
        self.host_pid: int | None = None  # and on the host, only once verified (see _verify_host_pid)
        self.host_start_ticks: int | None = None  # its start time: with the host pid, names exactly this process
        self.session_id = ""
        self._exec_id: str | None = None
        self._sock: socket.socket | None = None
        self._pending = b""  # raw bytes of a partially received frame

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def open(self, timeout: float = 30.0) -> None:
        self.pid = self.host_pid = self.host_start_ticks = None
        self.session_id = secrets.token_hex(6)
        self._exec_id = self.api.exec_create(
            self.container_id, ["bash", "--noprofile", "--norc"], stdin=True, stdout=True, stderr=True,
            tty=False, user=self.user, workdir=self.cwd, environment={**self.env, SESSION_VARIABLE: self.session_id},
        )["Id"]
        raw = start_exec(self.api, self.container_id, self._exec_id, socket=True)
        self._sock = getattr(raw, "_sock", raw)
        self._pending = b""
        nonce = new_nonce()
        self._send(handshake_line(nonce))
        buffer = CappedBuffer(4096)
        code, _ = self._read_until(nonce, buffer, time.monotonic() + timeout)
        if code is None:
            raise SessionDied(f"session {self.name!r} did not start within {timeout:.0f}s")
        self.pid = code
        self._find_host_pid(time.monotonic() + min(timeout, 5.0))

    def _find_host_pid(self, deadline: float) -> None:
        """Learn the shell's host pid, verified: a process in the container's cgroup whose own pid namespace calls
        it `self.pid`. `exec_inspect` sometimes reports no pid yet, so it is retried, and the cgroup is searched.
        Where this host cannot see the container's processes (a remote engine) the host pid stays None and only
        in-container killing is used. Where it can but no verified pid turns up, the session fails (closed)."""
        if cgroup_procs(self.container_id) is None:
            return
        while True:
            reported = self.api.exec_inspect(self._exec_id).get("Pid") or 0
            candidates = [reported] if reported > 0 else []
            candidates += [pid for pid in cgroup_procs(self.container_id) or [] if pid != reported]
            for pid in candidates:
                if self._verify_host_pid(pid):
                    return
            if time.monotonic() > deadline:
                self.close()
                raise SessionDied(f"session {self.name!r}: no verified host pid for its shell (pid {self.pid} in "
                                  f"the container); refusing to run commands it could not kill")
            time.sleep(0.02)

    def _verify_host_pid(self, pid: int) -> bool:
        if pid <= 1 or innermost_pid(pid) != self.pid or not in_container(pid, self.container_id):
            return False
        stat = read_stat(pid)
        if stat is None:
            return False
        self.host_pid, self.host_start_ticks = pid, stat.start_ticks
        return True

    def verified_shell(self) -> tuple[int, int] | None:
        """(host pid, start ticks) of this session's shell while it is still that process, else None."""
        if self.host_pid is None or self.host_start_ticks is None:
            return None
        stat = read_stat(self.host_pid)
        if stat is None or stat.start_ticks != self.host_start_ticks:
            return None
        return self.host_pid, self.host_start_ticks

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._send(b"exit 0\n")
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None

    def restart(self) -> None:
        """Kill the shell (and what it runs) and open a fresh one in the last known working directory."""
        if self.pid is not None:
            self._exec_kill(self.pid, "__none__")
            kill_shell(self.api, self.container_id, self.user, self.pid, self.verified_shell())
        self.close()
        self.open()

    # ---- commands --------------------------------------------------------------------------------------------
    def run(self, command: str, timeout: float) -> RawResult:
        if self._sock is None:
            self.open()
        start = time.monotonic()
        started_uptime = uptime()
        nonce = new_nonce()
        tag = secrets.token_hex(6)
        buffer = CappedBuffer(self.max_output_bytes)
        self.running = (tag, started_uptime)
        try:
            self._send(command_line(command, nonce, {"ROCK_CMD": tag}))
            exit_code, cwd = self._read_until(nonce, buffer, start + timeout)
        except SessionDied:
            return self._after_death(buffer, start, tag)
        finally:
            self.running = None
        if exit_code is not None:
            self.cwd = cwd or self.cwd
            output, cut = buffer.render()
            return RawResult(output, exit_code, False, cut, time.monotonic() - start, cmd_tag=tag)
        # Timed out: kill what the command started, then give the shell a moment to print its marker.
        self._exec_kill(self.pid, tag, started_uptime)
        restarted = False
        try:
            exit_code, cwd = self._read_until(nonce, buffer, time.monotonic() + 3.0)
        except SessionDied:
            exit_code = None
        if exit_code is None:  # the shell itself is stuck: replace it
            self.restart()
            restarted = True
        else:
            self._drain()
        output, cut = buffer.render()
        return RawResult(output, None, True, cut, time.monotonic() - start, restarted, cmd_tag=tag)

    def _drain(self, timeout: float = 3.0) -> None:
        """Discard what killed background processes wrote to the pipe after the marker: one empty round trip."""
        nonce = new_nonce()
        try:
            self._send(ping_line(nonce))
            self._read_until(nonce, CappedBuffer(4096), time.monotonic() + timeout)
        except SessionDied:
            self.close()
            self.open()

    def _after_death(self, buffer: CappedBuffer, start: float, tag: str) -> RawResult:
        """The shell exited (the command ran `exit`): report its status and open a new shell."""
        exit_code = None
        if self._exec_id is not None:
            for _ in range(20):
                info = self.api.exec_inspect(self._exec_id)
                if not info.get("Running"):
                    exit_code = info.get("ExitCode")
                    break
                time.sleep(0.05)
        self.close()
        self.open()
        output, cut = buffer.render()
        return RawResult(output, exit_code, False, cut, time.monotonic() - start, True, cmd_tag=tag)

    def kill_running(self) -> bool:
        """From another thread (the telemetry watcher): kill the processes of the command running now, by its tag,
        through the verified kill path; the shell stays and ends the command with its marker. False: none ran."""
        running = self.running
        if running is None:
            return False
        self._exec_kill(self.pid, *running)
        return True

    def _exec_kill(self, shell_pid: int | None, tag: str, since: float | None = None) -> None:
        since = uptime() if since is None else since
        if not kill_from_host(self.api, self.container_id, self.verified_shell(), tag, since, self.session_id):
            kill_in_container(self.api, self.container_id, self.user, shell_pid, tag)

    # ---- framing ---------------------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)

    def _read_until(self, nonce: str, buffer: CappedBuffer, deadline: float) -> tuple[int | None, str]:
        """Feed output into `buffer` until the end marker arrives (returns its exit code and cwd, marker removed)
        or the deadline passes (returns None)."""
        prefix = marker_prefix(nonce)
        while True:
            marker = take_marker(buffer, prefix)
            if marker is not None:
                return marker.status, marker.rest
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, ""
            self._sock.settimeout(min(remaining, 1.0))
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise SessionDied(str(exc)) from exc
            if not chunk:
                raise SessionDied("session shell exited")
            self._demux(chunk, buffer)

    def _demux(self, chunk: bytes, buffer: CappedBuffer) -> None:
        payloads, self._pending = demux(self._pending, chunk)
        for payload in payloads:
            buffer.feed(payload)
