"""Killing what a command started. Preferred: from the host, with the container frozen (rock.freezer), so that even
a fork bomb at its pids limit cannot outrun us and no process needs to be forked inside the container. Fallback
(no access to the host's /proc, e.g. a remote engine): a kill script run inside the container as the sandbox user.

Every signal sent from the host goes through `signal_verified`: a pid is signalled only through a pidfd, after
checking that it is still the process seen (same start time) and that it lives in the container's cgroup."""
from __future__ import annotations

import signal
import threading
import time
from typing import Any

import docker

from rock.cgroups import cgroup_procs
from rock.freezer import frozen
from rock.procfs import ProcStat, cgroup_text, innermost_pid, read_stat, signal_same_process, uptime

__all__ = ["kill_from_host", "kill_in_container", "signal_verified", "start_exec", "targets", "uptime",
           "SESSION_VARIABLE"]

SESSION_VARIABLE = "ROCK_SESSION"  # set in each session shell's environment: tells apart orphans of two sessions

# Same rule inside the container: processes carrying the command tag or descending from the session shell.
IN_CONTAINER_SCRIPT = r"""
self=$1; tag=$2
[ "$self" -gt 0 ] && kill -USR1 "$self" 2>/dev/null
for pass in 1 2 3; do
  tagged=$(grep -lsxz "ROCK_CMD=$tag" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
  desc=$(awk -v root="$self" '/^PPid:/ { split(FILENAME, a, "/"); parent[a[3]] = $2 }
    END { n = 1; q[1] = root; for (i = 1; i <= n; i++) for (p in parent) if (parent[p] == q[i]) { q[++n] = p; print p } }' \
    /proc/[0-9]*/status 2>/dev/null)
  for p in $tagged $desc; do [ "$p" = "$self" ] || [ "$p" = "$$" ] || kill -9 "$p" 2>/dev/null; done
done
true
"""

_freeze_locks: dict[str, threading.Lock] = {}
_freeze_locks_guard = threading.Lock()


def _freeze_lock(container_id: str) -> threading.Lock:
    """One freeze-kill-thaw at a time per container: a second killer's thaw must not undo the first's freeze."""
    with _freeze_locks_guard:
        return _freeze_locks.setdefault(container_id, threading.Lock())


def start_exec(api: docker.APIClient, container_id: str, exec_id: str, wait: float = 15.0, **options: Any) -> Any:
    """`exec_start`, never overlapping a freeze of the same container: the runtime refuses to set up an exec in a
    frozen container (exit 126; and `docker pause` during an exec's set-up hangs the engine). Holds the freeze lock
    until the engine reports the process started (or `wait` seconds: on a loaded machine an exec's set-up has been
    seen to take over 2 s, and a freeze that caught it made the exec fail)."""
    with _freeze_lock(container_id):
        result = api.exec_start(exec_id, **options)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            info = api.exec_inspect(exec_id)
            # the engine marks an exec Running before the runtime has started its process; its Pid comes after
            if (info.get("Pid") or 0) > 0 or info.get("ExitCode") is not None:
                break
            time.sleep(0.002)
        return result


def in_container(pid: int, container_id: str) -> bool:
    text = cgroup_text(pid)
    return bool(container_id) and text is not None and container_id in text


def signal_verified(container_id: str, pid: int, start_ticks: int, sig: int) -> bool:
    """Send `sig` to `pid` only if it is still the process that started at `start_ticks` and it belongs to the
    container (through a pinning pidfd: see rock.procfs.signal_same_process). False if not sent."""
    return signal_same_process(pid, start_ticks, sig, belongs=lambda p: in_container(p, container_id))


def _environ(pid: int) -> list[bytes]:
    try:
        return open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return []


def _variable(environ: list[bytes], name: str) -> bytes | None:
    prefix = name.encode() + b"="
    return next((item[len(prefix):] for item in environ if item.startswith(prefix)), None)


def targets(stats: dict[int, ProcStat], shell_pid: int, tag: str, since: float, session_id: str = "") -> set[int]:
    """Processes among `stats` (one container's processes by host pid) that the command started: those carrying
    ROCK_CMD=tag, those descending from the session shell, and orphans adopted by the container's init (pid 1 of
    its namespace) born after the command began (bash subshells keep no trace of `export` in /proc/PID/environ)
    unless they belong to another session or another command — and everything descending from any of these."""
    roots = {pid for pid, stat in stats.items() if stat.ppid not in stats}  # started from outside (init, execs)
    inits = {pid for pid in roots if innermost_pid(pid) == 1}
    chosen = set()
    for pid, stat in stats.items():
        environ = _environ(pid)
        command_tag = _variable(environ, "ROCK_CMD")
        if command_tag == tag.encode():
            chosen.add(pid)
        elif stat.ppid in inits and stat.start_seconds >= since - 0.02:
            session = _variable(environ, SESSION_VARIABLE)
            other_session = session is not None and session != session_id.encode()
            other_command = command_tag is not None and command_tag != tag.encode()
            if not (other_session or other_command):
                chosen.add(pid)
    frontier = [shell_pid, *chosen]
    while frontier:
        current = frontier.pop()
        for pid, stat in stats.items():
            if stat.ppid == current and pid not in chosen:
                chosen.add(pid)
                frontier.append(pid)
    return chosen - {shell_pid} - roots


def _container_stats(container_id: str) -> dict[int, ProcStat]:
    return {pid: stat for pid in cgroup_procs(container_id) or [] if (stat := read_stat(pid)) is not None}


def _kill_until_quiet(container_id: str, shell_host_pid: int, tag: str, since: float, session_id: str,
                      quiet_passes: int = 3, max_passes: int = 200) -> None:
    """SIGKILL targets until several passes in a row find no new one. One empty pass is not enough: a subshell in
    the middle of exiting (not frozen, already gone from cgroup.procs) hides its children until they are
    reparented. A process already signalled does not count: frozen, it dies only when the container thaws."""
    quiet, signalled = 0, set()
    for _ in range(max_passes):
        stats = _container_stats(container_id)
        victims = {pid for pid in targets(stats, shell_host_pid, tag, since, session_id)
                   if (pid, stats[pid].start_ticks) not in signalled}
        quiet = 0 if victims else quiet + 1
        if quiet >= quiet_passes:
            return
        for pid in victims:
            if signal_verified(container_id, pid, stats[pid].start_ticks, signal.SIGKILL):
                signalled.add((pid, stats[pid].start_ticks))
        time.sleep(0.005)


def kill_from_host(api: docker.APIClient, container_id: str, shell: tuple[int, int] | None, tag: str,
                   since: float, session_id: str = "") -> bool:
    """Freeze the container, SIGKILL the command's processes, signal the shell, thaw. `shell` is the session
    shell's verified (host pid, start ticks). False if not possible here (then nothing was signalled)."""
    if shell is None or cgroup_procs(container_id) is None:
        return False
    host_pid, start_ticks = shell
    with _freeze_lock(container_id), frozen(container_id):
        _kill_until_quiet(container_id, host_pid, tag, since, session_id)
        signal_verified(container_id, host_pid, start_ticks, signal.SIGUSR1)
    return True


def kill_in_container(api: docker.APIClient, container_id: str, user: str, shell_pid: int | None, tag: str) -> None:
    exec_id = api.exec_create(container_id, ["sh", "-c", IN_CONTAINER_SCRIPT, "rock-kill", str(shell_pid or 0), tag],
                              user=user)["Id"]
    start_exec(api, container_id, exec_id)
    while api.exec_inspect(exec_id).get("Running"):  # the kill script is done before the caller goes on
        time.sleep(0.01)


def kill_shell(api: docker.APIClient, container_id: str, user: str, shell_pid: int | None,
               shell: tuple[int, int] | None) -> None:
    """SIGKILL a session shell: from the host when its host pid is verified, else from inside the container as the
    sandbox user (who owns the shell). Never anything else."""
    if shell is not None and signal_verified(container_id, shell[0], shell[1], signal.SIGKILL):
        return
    if shell_pid is not None and shell_pid > 1:
        try:
            start_exec(api, container_id, api.exec_create(container_id, ["kill", "-9", str(shell_pid)], user=user)["Id"])
        except docker.errors.APIError:
            pass  # the container is gone: so is the shell


def _descendants(stats: dict[int, ProcStat], root: int) -> set[int]:
    found, frontier = set(), [root]
    while frontier:
        current = frontier.pop()
        children = {pid for pid, stat in stats.items() if stat.ppid == current and pid not in found}
        found |= children
        frontier.extend(children)
    return found


def kill_tree_from_host(api: docker.APIClient, container_id: str, root: tuple[int, int]) -> bool:
    """SIGKILL a verified process (host pid, start ticks) of the container and everything below it, the container
    frozen meanwhile. False if not possible here."""
    if cgroup_procs(container_id) is None:
        return False
    with _freeze_lock(container_id), frozen(container_id):
        signalled: set[tuple[int, int]] = set()
        for _ in range(50):
            stats = _container_stats(container_id)
            victims = {pid for pid in (_descendants(stats, root[0]) if root[0] in stats else set())
                       if (pid, stats[pid].start_ticks) not in signalled}
            for pid in victims:
                if signal_verified(container_id, pid, stats[pid].start_ticks, signal.SIGKILL):
                    signalled.add((pid, stats[pid].start_ticks))
            if not victims:
                break
        signal_verified(container_id, root[0], root[1], signal.SIGKILL)
    return True
