"""The sandbox's processes as the host sees them (/proc of host pids from the container's cgroup): who started whom
and when, what they are by their executable (not their self-chosen name), what their stdio is, how much CPU they
burn, and which files they name."""
from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import re2

from rock.procfs import read_stat, same_process, uptime
from rock.telemetry import container_paths
from rock.telemetry.attribution import Lineage
from rock.telemetry.detectors import BackgroundCpuDetector
from rock.telemetry.events import Event, make_event

# interpreters and shells by executable file name (after resolving /proc/PID/exe)
INTERPRETER = re2.compile(r"^((ba|da|z|k|a|fi|c|tc|mk)?sh|busybox|python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|"
                          r"node(js)?|lua[0-9.]*|tclsh[0-9.]*|pwsh|gawk|mawk|awk)$")
BIN_DIRS = ["usr/bin", "usr/local/bin", "bin"]
MINING_CONFIG = re2.compile(r'(?i)(stratum\+(tcp|ssl|tls)://|"donate-level"\s*:|"pools"\s*:\s*\[|"rig-id"\s*:)')
MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: float  # wall-clock seconds (to compare with command windows)
    comm: str
    ticks: int  # start in clock ticks since boot: with the pid, names this process despite pid reuse

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.ticks


def proc_info(pid: int) -> Proc | None:
    stat = read_stat(pid)
    if stat is None:
        return None
    return Proc(pid, stat.ppid, time.time() - (uptime() - stat.start_seconds), stat.comm, stat.start_ticks)


def snapshot(host_pids: list[int]) -> dict[int, Proc]:
    found = {}
    for pid in host_pids:
        info = proc_info(pid)
        if info is not None:
            found[pid] = info
    return found


def alive(proc: Proc) -> bool:
    """Still the same process, and not a zombie or exiting."""
    if not same_process(proc.pid, proc.ticks):
        return False
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1] not in ("Z", "X", "x")
    except OSError:
        return False
    return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def argv_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def fd_target(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return ""


def stdio_sockets(pid: int) -> list[int]:
    return [fd for fd in (0, 1, 2) if fd_target(pid, fd).startswith("socket:")]


def cpu_seconds(pid: int) -> float | None:
    """CPU time of all the process's threads so far (schedstat, in ns; no /proc/PID/stat parsing)."""
    total, seen = 0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9 if seen else None


def _digest(path: str) -> str | None:
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
    except OSError:
        return None
    return sha.hexdigest()


class InterpreterIdentity:
    """Is a process a shell or an interpreter? Decided by its executable: by file name, or (a renamed copy) by
    content equal to one of the container's own interpreters (regular files only: an absolute link inside the
    container would name a host file)."""

    def __init__(self) -> None:
        self._known: set[str] | None = None
        self._by_inode: dict[tuple[int, int], bool] = {}

    def _container_interpreters(self, pid: int) -> set[str]:
        digests = set()
        for directory in BIN_DIRS:
            root = f"/proc/{pid}/root/{directory}"
            try:
                names = os.listdir(root)
            except OSError:
                continue
            for name in names:
                path = f"{root}/{name}"
                if INTERPRETER.search(name) and not os.path.islink(path) and (digest := _digest(path)):
                    digests.add(digest)
        return digests

    def is_interpreter(self, pid: int) -> bool:
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            info = os.stat(f"/proc/{pid}/exe")
        except OSError:
            return False
        name = exe.removesuffix(" (deleted)").rsplit("/", 1)[-1]
        if INTERPRETER.search(name):
            return True
        key = (info.st_dev, info.st_ino)
        if key not in self._by_inode:
            if self._known is None:
                self._known = self._container_interpreters(pid)
            self._by_inode[key] = _digest(f"/proc/{pid}/exe") in self._known
        return self._by_inode[key]


def _read_in_container(pid: int, path: str, base: str | None) -> str | None:
    """At most MAX_CONFIG_BYTES of a regular file as the process sees it. Links are followed inside the container
    (never out to the host's files), and the file itself is opened without following a link."""
    resolved = container_paths.resolve(path, pid, base)
    where = f"/proc/{pid}/root{resolved}"
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_CONFIG_BYTES).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def mining_config(pid: int) -> str | None:
    """A file the process names on its command line, or holds open, that configures a mining pool."""
    candidates = []
    for arg in argv_of(pid)[1:]:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value and not value.startswith("-") and len(value) < 4096:
            candidates.append(value)
    try:
        candidates += [link for fd in os.listdir(f"/proc/{pid}/fd") if (link := fd_target(pid, int(fd)))
                       .startswith("/")]
    except OSError:
        pass
    base = container_paths.base_directory(pid, container_paths.AT_FDCWD, [])
    for name in list(dict.fromkeys(candidates))[:64]:
        text = _read_in_container(pid, name, base)
        if text is not None and MINING_CONFIG.search(text):
            return name
    return None


class ProcessCensus:
    """Checks over the sandbox's live processes. `shells` maps session-shell host pids to session names;
    `running(session)` says whether that session runs a command now; `last_end(session)` when its last finished
    command ended."""

    def __init__(self, sandbox_name: str, lineage: Lineage, cpu_detector: BackgroundCpuDetector) -> None:
        self.sandbox_name = sandbox_name
        self.lineage = lineage
        self.cpu = cpu_detector
        self.identity = InterpreterIdentity()
        self.reported: set[tuple[str, tuple[int, int]]] = set()
        self.config_checked: set[tuple[int, int]] = set()

    def processes(self, host_pids: list[int] | None) -> dict[int, Proc]:
        procs = snapshot(host_pids or [])
        for proc in procs.values():
            self.lineage.learn_process(proc.pid, proc.ppid, proc.start)
        return procs

    def _once(self, what: str, proc: Proc) -> bool:
        key = (what, proc.key)
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    def socket_shells(self, procs: dict[int, Proc]) -> list[Event]:
        """A shell or interpreter (by its executable) with a socket on stdin, stdout or stderr: a reverse shell."""
        events = []
        for proc in procs.values():
            fds = stdio_sockets(proc.pid)
            if not fds or not self.identity.is_interpreter(proc.pid):
                continue
            if self._once("socket-on-stdio", proc):
                events.append(make_event("network.reverse_shell", "socket-on-stdio",
                                         f"{proc.comm} (pid {proc.pid}) has a socket on fd {fds}: "
                                         f"{cmdline(proc.pid)[:200]}", time=time.time(), sandbox=self.sandbox_name,
                                         pid=proc.pid, source="census",
                                         detail={"exe": _exe(proc.pid), "fds": fds}))
        return events

    def foreground(self, proc: Proc, shells: dict[int, str], running: Callable[[str], bool],
                   last_end: Callable[[str], float]) -> bool:
        """Started by a command that runs now (a descendant of its session shell, born after the last command of
        that session ended)."""
        chain = self.lineage.chain(proc.pid)
        for index, ancestor in enumerate(chain):
            if ancestor in shells:
                session = shells[ancestor]
                if not running(session):
                    return False
                if index == 0:
                    return True
                # strictly after: a command that puts a job in the background ends milliseconds after starting it
                return self.lineage.start.get(chain[index - 1], proc.start) > last_end(session)
        return False

    def cpu_events(self, procs: dict[int, Proc], shells: dict[int, str], running: Callable[[str], bool],
                   last_end: Callable[[str], float], now: float) -> list[Event]:
        usage = {}
        for proc in procs.values():
            spent = cpu_seconds(proc.pid)
            if spent is None:
                continue
            usage[proc.key] = (spent, not self.foreground(proc, shells, running, last_end))
            if spent >= self.cpu.cpu_seconds and proc.key not in self.config_checked:
                self.config_checked.add(proc.key)
                config = mining_config(proc.pid)
                if config is not None and self._once("cpu-miner-config", proc):
                    return_event = make_event(
                        "compute.mining", "cpu-miner-config", f"pid {proc.pid} burns CPU with a mining pool "
                        f"configured in {config}: {cmdline(proc.pid)[:200]}", time=now, sandbox=self.sandbox_name,
                        pid=proc.pid, source="census", detail={"config": config, "cpu_seconds": round(spent, 2)})
                    self.reported.add(("background-cpu", proc.key))
                    self.cpu.fired.add(proc.key)
                    return [return_event]
        events = []
        by_key = {proc.key: proc for proc in procs.values()}
        for key, recent in self.cpu.sample(now, usage):
            proc = by_key[key]
            if self._once("background-cpu", proc):
                events.append(make_event("compute.anomaly", "background-cpu", f"{recent:.1f} CPU-seconds in "
                                         f"{self.cpu.window:.0f}s by a process no running command started: "
                                         f"{cmdline(proc.pid)[:200]}", time=now, sandbox=self.sandbox_name,
                                         pid=proc.pid, source="cgroup",
                                         detail={"cpu_seconds": round(recent, 2), "cmdline": cmdline(proc.pid)[:500]}))
        return events

    def survivors(self, procs: dict[int, Proc], shells: dict[int, str], settle: float = 0.15) -> list[Event]:
        """Processes that outlive their command: orphans adopted by the container's init (except its keep-alive
        child) and background jobs still hanging off a session shell. Each suspect is looked at again after
        `settle` seconds: a server that is exiting (killed at the end of its command) is not a survivor."""
        if not procs:
            return []
        roots = sorted((p for p in procs.values() if p.ppid not in procs), key=lambda p: p.start)
        init = roots[0].pid
        children_of_init = sorted((p for p in procs.values() if p.ppid == init), key=lambda p: p.start)
        keepalive = {p.pid for p in children_of_init[:1]}
        suspects = [p for p in children_of_init if p.pid not in keepalive]
        suspects += [p for p in procs.values() if p.ppid in shells]
        suspects = [p for p in suspects if ("survivor", p.key) not in self.reported]
        if not suspects:
            return []
        time.sleep(settle)  # also lets a forked subshell about to exec show its real command line
        events = []
        for proc in suspects:
            if not alive(proc) or not self._once("survivor", proc):
                continue
            line = cmdline(proc.pid)
            events.append(make_event("process.persistence", "survivor", f"process outlived its command: {line[:200]}",
                                     time=time.time(), sandbox=self.sandbox_name, pid=proc.pid, source="census",
                                     detail={"cmdline": line[:500]}))
        return events


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""
