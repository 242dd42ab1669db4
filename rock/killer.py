"""Killing what a command started. Preferred: from the host, with the container frozen (`docker pause`), so that even
a fork bomb at its pids limit cannot outrun us and no process needs to be forked inside the container. Fallback
(no access to the host's /proc, e.g. a remote engine): a kill script run inside the container."""
from __future__ import annotations

import os
import signal
import time

import docker

from rock.cgroups import cgroup_procs

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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def uptime() -> float:
    """Seconds since boot: the clock /proc/PID/stat start times are measured on."""
    return float(open("/proc/uptime").read().split()[0])


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, start time in seconds since boot)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19]) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def _tagged(pid: int, needle: bytes) -> bool:
    try:
        return needle in open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return False


def targets(pids: list[int], shell_pid: int, tag: str, since: float) -> set[int]:
    """Processes among `pids` (host pids of one container) that the command started: those carrying ROCK_CMD=tag
    in their environment, those descending from the session shell, and orphans adopted by the container's init
    that were born after the command began (bash subshells keep no trace of `export` in /proc/PID/environ) —
    and everything descending from any of these."""
    stats = {pid: stat for pid in pids if (stat := _stat(pid)) is not None}
    inits = {pid for pid, (ppid, _) in stats.items() if ppid not in stats}
    needle = f"ROCK_CMD={tag}".encode()
    chosen = {pid for pid in stats if _tagged(pid, needle)}
    chosen |= {pid for pid, (ppid, born) in stats.items() if ppid in inits and born >= since - 0.02}
    frontier = [shell_pid, *chosen]
    while frontier:
        current = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == current and pid not in chosen:
                chosen.add(pid)
                frontier.append(pid)
    return chosen - {shell_pid} - inits


def _kill_until_quiet(container_id: str, shell_host_pid: int, tag: str, since: float,
                      quiet_passes: int = 3, max_passes: int = 200) -> None:
    """SIGKILL targets until several passes in a row find none. One empty pass is not enough: a subshell in the
    middle of exiting (not frozen, already gone from cgroup.procs) hides its children until they are reparented."""
    quiet = 0
    for _ in range(max_passes):
        victims = targets(cgroup_procs(container_id) or [], shell_host_pid, tag, since)
        quiet = 0 if victims else quiet + 1
        if quiet >= quiet_passes:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


def kill_from_host(api: docker.APIClient, container_id: str, shell_host_pid: int | None, tag: str,
                   since: float) -> bool:
    """Freeze the container, SIGKILL the command's processes, signal the shell, thaw. False if not possible here."""
    if shell_host_pid is None or cgroup_procs(container_id) is None:
        return False
    try:
        api.pause(container_id)
    except docker.errors.APIError:
        return False
    try:
        _kill_until_quiet(container_id, shell_host_pid, tag, since)
        try:
            os.kill(shell_host_pid, signal.SIGUSR1)
        except (ProcessLookupError, PermissionError):
            pass
    finally:
        api.unpause(container_id)
    return True


def kill_in_container(api: docker.APIClient, container_id: str, user: str, shell_pid: int | None, tag: str) -> None:
    exec_id = api.exec_create(container_id, ["sh", "-c", IN_CONTAINER_SCRIPT, "rock-kill", str(shell_pid or 0), tag],
                              user=user)["Id"]
    api.exec_start(exec_id)
