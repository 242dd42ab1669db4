"""Killing what a local shell's command started (`--sandbox none`), including what tried to get away.

A process is a target when it descends from the shell (parent links in /proc), when its environment carries the
command's tag (`IFLOW_CMD`, exported before the command, so everything it execs inherits it), or when it carries the
shell's tag (`IFLOW_SHELL`, in the shell's own environment, so forked subshells show it too) and started after the
command began: `setsid -f` or a double fork leaves the tree, not the environment. Every signal goes through a pidfd
after checking that the pid is still the process seen (same start time), so a reused pid is never hit.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from rock.procfs import ProcStat, all_pids, read_stat, signal_same_process

COMMAND_VARIABLE = "IFLOW_CMD"
SHELL_VARIABLE = "IFLOW_SHELL"
QUIET_PASSES = 3        # stop once this many passes in a row find nothing to kill (a subshell mid-fork hides)
MAX_KILL_SECONDS = 5.0  # a fork loop cannot keep us here for ever


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def _is_zombie(pid: int) -> bool:
    """Dead, not yet reaped: nothing left to kill (its environment reads empty, its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            return any(line.startswith("State:") and "Z" in line.split()[1:2] for line in handle)
    except OSError:
        return True


def _own_processes() -> dict[int, ProcStat]:
    """Our user's processes (the only ones we could signal anyway), by pid."""
    uid, found = os.getuid(), {}
    for pid in all_pids():
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        stat = read_stat(pid)
        if stat is not None:
            found[pid] = stat
    return found


def _descendants(stats: dict[int, ProcStat], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, frontier = set(), list(roots)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def targets(stats: dict[int, ProcStat], shell_pid: int, shell_tag: str, command_tag: str | None,
            since_ticks: int) -> set[int]:
    """What to kill among `stats`: see the module docstring. `command_tag` None: everything of the shell (close);
    the shell itself is included then, and only then."""
    command_entry = f"{COMMAND_VARIABLE}={command_tag}".encode() if command_tag else None
    shell_entry = f"{SHELL_VARIABLE}={shell_tag}".encode()
    chosen = set()
    for pid, stat in stats.items():
        environ = _environ(pid)
        tagged_by_command = command_entry is not None and command_entry in environ
        born_in_command = shell_entry in environ and (command_tag is None or stat.start_ticks >= since_ticks)
        if tagged_by_command or born_in_command:
            chosen.add(pid)
    chosen |= _descendants(stats, [shell_pid, *chosen])
    if command_tag is None:
        return chosen | ({shell_pid} if shell_pid in stats else set())
    return chosen - {shell_pid}


def signal_verified(pid: int, start_ticks: int, sig: int = signal.SIGKILL) -> bool:
    """Signal `pid` only while it is still the process that started at `start_ticks` (the pidfd pins it)."""
    return signal_same_process(pid, start_ticks, sig)


def kill_command(shell_pid: int, shell_tag: str, command_tag: str | None, since_ticks: int) -> int:
    """Kill the command's processes (or, with `command_tag` None, the shell and everything of it) until several
    passes in a row find nothing. Returns how many signals were sent."""
    sent, quiet, deadline = 0, 0, time.monotonic() + MAX_KILL_SECONDS
    while quiet < QUIET_PASSES and time.monotonic() < deadline:
        stats = _own_processes()
        hit = [pid for pid in targets(stats, shell_pid, shell_tag, command_tag, since_ticks)
               if not _is_zombie(pid) and signal_verified(pid, stats[pid].start_ticks)]
        sent += len(hit)
        quiet = 0 if hit else quiet + 1
        if hit:
            time.sleep(0.01)  # let the killed die, so that their orphans show up reparented
    return sent
