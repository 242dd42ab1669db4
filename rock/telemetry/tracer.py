"""One eBPF tracer per host, serving every sandbox: a daemon (tracer_daemon.py) runs bpftrace and appends each
observation to `<spool>/<sandbox>.jsonl`; sandboxes (in any process on the host) read their own file (spool.py).
The daemon is started on demand by `ensure_tracer()` (or `rock tracer start`) and exits when no sandbox has run for
`idle_exit` seconds. Its pid file is trusted only after checking the process's command line and start time."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from rock.procfs import read_stat
from rock.telemetry.spool import PID_FILE, STALE_AFTER, ObservationReader, read_heartbeat

SPOOL = Path(os.environ.get("ROCK_TELEMETRY_DIR", "/run/rock/telemetry"))
DAEMON_MODULE = "rock.telemetry.tracer_daemon"

__all__ = ["SPOOL", "ObservationReader", "TracerStatus", "ensure_tracer", "stop_tracer", "tracer_alive", "tracer_pid"]


class TracerStatus(BaseModel):
    mode: str  # "ebpf" or "degraded"
    reason: str = ""
    spool: str = ""
    pid: int | None = None


def ebpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "eBPF tracing needs root"
    if shutil.which("bpftrace") is None:
        return "bpftrace is not installed (apt-get install bpftrace)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "the kernel exposes no BTF (/sys/kernel/btf/vmlinux)"
    return None


def _is_daemon(pid: int, start_ticks: int, spool: Path) -> bool:
    """`pid` is still our daemon for this spool: same start time (not a reused pid) and its command line."""
    stat = read_stat(pid)
    if stat is None or stat.start_ticks != start_ticks:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv]
    return DAEMON_MODULE in args and "--spool" in args and Path(args[args.index("--spool") + 1]) == spool


def tracer_pid(spool: Path = SPOOL) -> int | None:
    """The daemon's pid, verified; None when the pid file is missing, stale or names another process."""
    try:
        record = json.loads((spool / PID_FILE).read_text())
        pid, start = int(record["pid"]), int(record["start_ticks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if _is_daemon(pid, start, spool) else None


def tracer_alive(spool: Path = SPOOL, stale_after: float = STALE_AFTER) -> bool:
    """The daemon runs and its bpftrace output moved within `stale_after` seconds (the heartbeat file)."""
    pid = tracer_pid(spool)
    beat = read_heartbeat(spool)
    return (pid is not None and beat is not None and beat.get("pid") == pid
            and time.time() - float(beat.get("updated", 0.0)) < stale_after)


def _start_daemon(spool: Path, idle_exit: float) -> None:
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "stop").unlink(missing_ok=True)
    with open(spool / "daemon.log", "a") as log:
        subprocess.Popen([sys.executable, "-m", DAEMON_MODULE, "--spool", str(spool), "--idle-exit", str(idle_exit)],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)


def ensure_tracer(spool: Path = SPOOL, idle_exit: float = 300.0, timeout: float = 90.0) -> TracerStatus:
    """Start the host tracer unless a live one runs (a hung one is stopped first); report eBPF or, loudly,
    degraded mode."""
    reason = ebpf_unavailable_reason()
    if reason:
        return TracerStatus(mode="degraded", reason=reason)
    if tracer_pid(spool) is not None and not _wait_alive(spool, STALE_AFTER):
        stop_tracer(spool)
    if tracer_pid(spool) is None:
        _retire_unverified(spool)
        _start_daemon(spool, idle_exit)
    if not _wait_alive(spool, timeout):
        log_file = spool / "last-exit.log"
        detail = log_file.read_text()[-500:] if log_file.exists() else ""
        return TracerStatus(mode="degraded", reason=f"bpftrace did not start in {timeout:.0f}s {detail}")
    return TracerStatus(mode="ebpf", spool=str(spool), pid=tracer_pid(spool))


def _lock_held(spool: Path) -> bool:
    try:
        with open(spool / "tracer.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(lock, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _retire_unverified(spool: Path, timeout: float = 10.0) -> None:
    """A daemon holds the lock but its pid file cannot be verified (an older version, or one still starting):
    ask it to stop through the stop file (no signal to an unverified pid) and wait for the lock."""
    if not _lock_held(spool):
        return
    deadline = time.monotonic() + timeout
    while _lock_held(spool) and tracer_pid(spool) is None and time.monotonic() < deadline:
        if not (spool / "ready").exists() or not (spool / "ready").read_text().strip().startswith("{"):
            (spool / "stop").write_text("")
        time.sleep(0.2)


def _wait_alive(spool: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not tracer_alive(spool):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_tracer(spool: Path = SPOOL, timeout: float = 10.0) -> bool:
    """Ask the daemon to stop (a stop file it checks every ~2 s); a verified daemon that does not is terminated."""
    pid = tracer_pid(spool)
    if pid is None:
        return False
    (spool / "stop").write_text("")
    deadline = time.monotonic() + timeout
    while tracer_pid(spool) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if tracer_pid(spool) == pid:  # verified again just before the signal
        os.kill(pid, 15)
    return True


def main() -> None:  # the former entry point: `python -m rock.telemetry.tracer` runs the daemon
    from rock.telemetry.tracer_daemon import main as daemon_main

    daemon_main()


if __name__ == "__main__":
    main()
