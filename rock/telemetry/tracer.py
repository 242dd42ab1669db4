"""One eBPF tracer per host, serving every sandbox: a daemon process runs bpftrace and appends each observation to
`<spool>/<sandbox>.jsonl`. Sandboxes (in any process on the host) read their own file. The daemon is started on
demand by `ensure_tracer()` (or `rock tracer start`) and exits when no sandbox has run for `idle_exit` seconds.

Run as: python -m rock.telemetry.tracer [--spool DIR] [--idle-exit SECONDS]"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from rock.cgroups import cgroup_procs
from rock.telemetry.bpf import boot_offset, parse_line, program
from rock.telemetry.events import Observation

SPOOL = Path(os.environ.get("ROCK_TELEMETRY_DIR", "/run/rock/telemetry"))
LINE_START = re.compile(r"^[XCOS]\t\d+\t")


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


def _mount_tracefs() -> None:
    if not Path("/sys/kernel/tracing/events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True)


def _uts_inode(pid: int) -> int | None:
    try:
        return int(os.readlink(f"/proc/{pid}/ns/uts").split("[")[1].rstrip("]"))
    except (OSError, IndexError, ValueError):
        return None


class UtsMap:
    """UTS namespace inode -> sandbox name. Inodes are reused once a namespace dies, so every hit is checked against
    the container's init (one readlink); an unknown inode triggers a look at the engine, at most every 50 ms."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[str, int]] = {}  # inode -> (sandbox name, host pid of its init)
        self._last_refresh = 0.0

    def lookup(self, inum: int) -> str | None:
        entry = self.entries.get(inum)
        if entry is not None and _uts_inode(entry[1]) != inum:
            del self.entries[inum]
            entry = None
        if entry is None and time.monotonic() - self._last_refresh > 0.05:
            self.refresh()
            entry = self.entries.get(inum)
        return entry[0] if entry else None

    def refresh(self) -> None:
        from rock.engine import client

        self._last_refresh = time.monotonic()
        api = client().api
        known = {name for name, _ in self.entries.values()}
        for container in api.containers(filters={"label": "rock.managed"}):
            name = container["Names"][0].lstrip("/")
            if name in known:
                continue
            for pid in cgroup_procs(container["Id"]) or []:  # any process of the container shares its UTS ns
                inode = _uts_inode(pid)
                if inode is not None:
                    self.entries[inode] = (name, pid)
                    break

    def any_running(self) -> bool:
        from rock.engine import client

        return bool(client().api.containers(filters={"label": "rock.managed"}))


def _cmd_tag(pid: int | None) -> str:
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return ""
    for item in environ:
        if item.startswith(b"ROCK_CMD="):
            return item[9:].decode(errors="replace")
    return ""


def serve(spool: Path, idle_exit: float) -> int:
    """The daemon's main loop. Holds `spool/tracer.lock` for its lifetime: a second daemon exits at once."""
    spool.mkdir(parents=True, exist_ok=True)
    lock = open(spool / "tracer.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    lock.write(str(os.getpid()))
    lock.flush()
    (spool / "ready").unlink(missing_ok=True)
    _mount_tracefs()
    script = spool / "rock.bt"
    script.write_text(program())
    proc = subprocess.Popen(["bpftrace", "-B", "line", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    uts = UtsMap()
    offset = boot_offset()
    handles: dict[str, object] = {}
    last_busy = [time.monotonic()]

    def watch_idle() -> None:
        while proc.poll() is None:
            time.sleep(2.0)
            try:
                if uts.any_running():
                    last_busy[0] = time.monotonic()
            except Exception:  # noqa: BLE001 - engine hiccup: try again
                continue
            if time.monotonic() - last_busy[0] > idle_exit or (spool / "stop").exists():
                proc.terminate()

    threading.Thread(target=watch_idle, daemon=True).start()

    backlog: list[tuple[float, str]] = []  # lines of sandboxes not yet known to the engine query

    def emit(line: str, retry: bool = True) -> None:
        fields = line.split("\t")
        if len(fields) <= 6 or not fields[6].isdigit() or fields[5].startswith("runc"):
            return
        sandbox = uts.lookup(int(fields[6]))
        if sandbox is None:
            if retry:
                backlog.append((time.monotonic(), line))
            return
        fields[6] = sandbox
        observation = parse_line("\t".join(fields), offset)
        if observation is None:
            return
        if observation.kind in ("exec", "connect"):
            observation.cmd_tag = _cmd_tag(observation.pid)
        handle = handles.get(sandbox)
        if handle is None:
            handle = handles[sandbox] = open(spool / f"{sandbox}.jsonl", "a")
        handle.write(observation.model_dump_json() + "\n")
        handle.flush()

    pending = ""
    buffer = b""
    fd = proc.stdout.fileno()
    while True:
        if backlog:
            waiting, backlog[:] = list(backlog), []
            for since, line in waiting:
                emit(line, retry=time.monotonic() - since < 10.0)
        ready = select.select([fd], [], [], 0.005 if pending or backlog else 1.0)[0]
        if not ready:
            if pending:  # nothing more came: the exec line (whose argv may span lines) is complete
                emit(pending)
                pending = ""
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.startswith("READY"):
                (spool / "ready").write_text(str(os.getpid()))
            elif LINE_START.match(line):
                if pending:
                    emit(pending)
                pending = line
            elif pending:  # an argv with a newline in it continues the previous exec line
                pending += "\n" + line
    if pending:
        emit(pending)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    (spool / "ready").unlink(missing_ok=True)
    (spool / "stop").unlink(missing_ok=True)
    (spool / "last-exit.log").write_text(err[-4000:])
    return proc.wait()


def tracer_pid(spool: Path = SPOOL) -> int | None:
    ready = spool / "ready"
    if not ready.exists():
        return None
    try:
        pid = int(ready.read_text())
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        return None


def ensure_tracer(spool: Path = SPOOL, idle_exit: float = 300.0, timeout: float = 90.0) -> TracerStatus:
    """Start the host tracer if none is running; report eBPF or, loudly, degraded mode."""
    reason = ebpf_unavailable_reason()
    if reason:
        return TracerStatus(mode="degraded", reason=reason)
    pid = tracer_pid(spool)
    if pid is None:
        spool.mkdir(parents=True, exist_ok=True)
        (spool / "stop").unlink(missing_ok=True)
        log = open(spool / "daemon.log", "a")
        subprocess.Popen([sys.executable, "-m", "rock.telemetry.tracer", "--spool", str(spool),
                          "--idle-exit", str(idle_exit)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while (pid := tracer_pid(spool)) is None:
            if time.monotonic() > deadline:
                detail = (spool / "last-exit.log").read_text()[-500:] if (spool / "last-exit.log").exists() else ""
                return TracerStatus(mode="degraded", reason=f"bpftrace did not start in {timeout:.0f}s {detail}")
            time.sleep(0.2)
    return TracerStatus(mode="ebpf", spool=str(spool), pid=pid)


def stop_tracer(spool: Path = SPOOL, timeout: float = 10.0) -> bool:
    pid = tracer_pid(spool)
    if pid is None:
        return False
    (spool / "stop").write_text("")
    deadline = time.monotonic() + timeout
    while tracer_pid(spool) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


class ObservationReader:
    """Tails one sandbox's spool file."""

    def __init__(self, sandbox: str, spool: Path = SPOOL) -> None:
        self.path = spool / f"{sandbox}.jsonl"
        self.offset = 0

    def read(self) -> list[Observation]:
        if not self.path.exists():
            return []
        with self.path.open() as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind("\n") + 1]
        self.offset += len(complete.encode())
        return [Observation.model_validate(json.loads(line)) for line in complete.splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spool", type=Path, default=SPOOL)
    parser.add_argument("--idle-exit", type=float, default=300.0)
    args = parser.parse_args()
    sys.exit(serve(args.spool, args.idle_exit))


if __name__ == "__main__":
    main()
