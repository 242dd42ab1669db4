"""One reader for /proc/PID/stat: pid, parent, start time and command name of a process (Linux)."""
from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    start_ticks: int  # field 22: clock ticks since boot; with the pid it names one process despite pid reuse
    comm: str

    @property
    def start_seconds(self) -> float:
        """Start time in seconds since boot (the clock of `uptime()`)."""
        return self.start_ticks / CLOCK_TICKS


def parse_stat(text: str) -> ProcStat:
    """Parse the text of /proc/PID/stat. The comm is in parentheses and may itself contain ')' or spaces, so the
    fields after it are found from the last ')'."""
    open_paren, close_paren = text.index("("), text.rindex(")")
    fields = text[close_paren + 2:].split()
    return ProcStat(pid=int(text[:open_paren]), ppid=int(fields[1]), start_ticks=int(fields[19]),
                    comm=text[open_paren + 1:close_paren])


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The stat of a live process, or None when it is gone (or unreadable)."""
    try:
        return parse_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_pids(proc: Path = PROC) -> list[int]:
    return [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]


def uptime() -> float:
    """Seconds since boot: the clock /proc/PID/stat start times are measured on."""
    return float((PROC / "uptime").read_text().split()[0])


def same_process(pid: int, start_ticks: int) -> bool:
    """True only when `pid` is still the process that started at `start_ticks` (not a reuse of its number)."""
    stat = read_stat(pid)
    return stat is not None and stat.start_ticks == start_ticks


def innermost_pid(pid: int, proc: Path = PROC) -> int | None:
    """The pid as the process's own (innermost) pid namespace numbers it: the last field of `NSpid:`."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_text(pid: int, proc: Path = PROC) -> str | None:
    """The raw /proc/PID/cgroup (one line per hierarchy), or None when the process is gone."""
    try:
        return (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None


def signal_same_process(pid: int, start_ticks: int, sig: int = signal.SIGKILL,
                        belongs: Callable[[int], bool] | None = None) -> bool:
    """Send `sig` to `pid` only while it is still the process that started at `start_ticks` (and, with `belongs`,
    passes that check too). The pidfd is opened before the checks and pins the process, so a pid reused after them
    cannot be hit. Never pid 0/1 or this process. False if not sent."""
    if pid <= 1 or pid == os.getpid():
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        stat = read_stat(pid)
        if stat is None or stat.start_ticks != start_ticks or (belongs is not None and not belongs(pid)):
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)
