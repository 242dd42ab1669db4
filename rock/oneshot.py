"""One-off processes in a container (`docker exec` outside any session), for tooling: bounded in time (the process
and everything below it is killed at the deadline) and in output (head + tail kept, the rest counted)."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import docker

from rock.cgroups import cgroup_procs
from rock.framing import demux
from rock.killer import in_container, kill_tree_from_host, start_exec
from rock.output import CappedBuffer
from rock.procfs import read_stat

TIMED_OUT = 124  # the exit status reported for a process killed at its deadline, as timeout(1) does


@dataclass
class ExecResult:
    exit_code: int
    output: str
    timed_out: bool
    truncated_bytes: int


def _verified_exec_pid(api: docker.APIClient, container_id: str, exec_id: str,
                       wait: float = 2.0) -> tuple[int, int] | None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pid = api.exec_inspect(exec_id).get("Pid") or 0
        if pid > 1 and in_container(pid, container_id) and (stat := read_stat(pid)) is not None:
            return pid, stat.start_ticks
        time.sleep(0.02)
    return None


def run_exec(api: docker.APIClient, container_id: str, argv: list[str], user: str, workdir: str,
             timeout: float, max_output_bytes: int) -> ExecResult:
    exec_id = api.exec_create(container_id, argv, user=user, workdir=workdir)["Id"]
    raw = start_exec(api, container_id, exec_id, socket=True)
    sock: socket.socket = getattr(raw, "_sock", raw)
    buffer, pending = CappedBuffer(max_output_bytes), b""
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            sock.settimeout(min(remaining, 1.0))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                break
            payloads, pending = demux(pending, chunk)
            for payload in payloads:
                buffer.feed(payload)
    finally:
        if timed_out:
            _kill(api, container_id, exec_id)
        sock.close()
    output, cut = buffer.render()
    if timed_out:
        return ExecResult(TIMED_OUT, output, True, cut)
    code = None
    for _ in range(100):  # the stream ends a moment before the engine records the exit status
        info = api.exec_inspect(exec_id)
        if not info.get("Running"):
            code = info.get("ExitCode")
            break
        time.sleep(0.01)
    return ExecResult(code if code is not None else -1, output, False, cut)


def _kill(api: docker.APIClient, container_id: str, exec_id: str) -> None:
    """Where this host can see the container's processes; a remote engine's exec is left to run (and its output
    is no longer read)."""
    if cgroup_procs(container_id) is None:
        return
    root = _verified_exec_pid(api, container_id, exec_id)
    if root is not None:
        kill_tree_from_host(api, container_id, root)
