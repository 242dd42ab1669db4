"""The host tracer daemon: runs bpftrace (`-f json`), turns its records into Observations and appends each to
`<spool>/<sandbox>.jsonl` (see spool.py for the file interface). One per host, held by `<spool>/tracer.lock`.

Run as: python -m rock.telemetry.tracer_daemon [--spool DIR] [--idle-exit SECONDS]"""
from __future__ import annotations

import argparse
import collections
import fcntl
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from rock.procfs import read_stat
from rock.telemetry import container_paths
from rock.telemetry.bpf import bpftrace_environment, program
from rock.telemetry.bpf_output import Heartbeat, Lost, Part, Record, RecordAssembler, decode
from rock.telemetry.events import Observation
from rock.telemetry.spool import PID_FILE, SpoolWriter, write_heartbeat
from rock.telemetry.uts_map import SandboxEntry, SandboxMap

log = logging.getLogger("rock.tracer")
BACKLOG_SECONDS = 10.0  # how long records of a not-yet-known sandbox wait for the engine to list it
BACKLOG_RECORDS = 20000  # per namespace, at most


def engine_containers() -> list[tuple[str, str]]:
    from rock.engine import client

    return [(c["Names"][0].lstrip("/"), c["Id"]) for c in client().api.containers(filters={"label": "rock.managed"})]


def _mount_tracefs() -> None:
    if not Path("/sys/kernel/tracing/events").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], capture_output=True, check=False)


def _observation(record: Record, entry: SandboxEntry, offset: float) -> Observation | None:
    """A record of a known sandbox as an Observation, or None when it is not worth a line (an ordinary open)."""
    base_dir = record.context.get("kernel_base") or record.context.get("base")
    root_pid = entry.init_pid  # the container's root, which every process of it shares (and the init outlives them)
    extra: dict[str, object] = {}
    fields: dict[str, object] = {}
    if record.kind == "C" and record.fields[0] == "unix":
        # a socket file is reached like a file: judged as an open of its resolved path
        if record.text.startswith("@"):  # abstract: no file, nothing to resolve
            return None
        kind, path = "open", container_paths.resolve(record.text, root_pid, base_dir)
        if not container_paths.is_sensitive(path):
            return None
        fields, extra = {"path": path}, {"syscall": "connect", "family": "unix", "raw_path": record.text}
    elif record.kind == "C":
        kind = "connect"
        fields = {"family": record.fields[0], "address": record.text,
                  "port": socket.ntohs(int(record.fields[1]) & 0xFFFF)}
    elif record.kind == "S":
        kind, fields = "syscall", {"syscall": record.text}
    elif record.kind == "O":
        kind, path = "open", container_paths.resolve(record.text, root_pid, base_dir)
        if not container_paths.is_sensitive(path):  # the common case: decided before anything is built
            return None
        fields = {"path": path}
        extra = {"syscall": record.fields[0], "raw_path": record.text, "flags": int(record.fields[2])}
    elif record.kind == "X":
        kind, syscall, path = "exec", record.fields[0], record.text
        extra = {"syscall": syscall, "raw_path": record.text}
        if syscall == "execveat" and (path == "" or int(record.fields[2]) & 0x1000):  # AT_EMPTY_PATH: the fd itself
            extra["fileless"] = True
            path = base_dir or record.context.get("fd_name") or f"fd:{record.fields[1]}"
        else:  # folded, links not followed: rules name the binary as it was invoked (`nc`, not `nc.openbsd`)
            path = container_paths.resolve(path, None, base_dir)
        fields = {"path": path, "argv": record.argv}
    else:
        return None  # links are paired by TracerDaemon._link
    head = record.head
    ktime = int(head["ktime"])
    data = {"source": "ebpf", "ktime_ns": ktime, "tid": head["tid"], "start_ns": head["start_ns"],
            "parent_start_ns": head["parent_start_ns"], "entry": bool(head["entry"]), "cgroup": head["cgroup"],
            **extra}
    return Observation(kind=kind, time=ktime / 1e9 + offset, start_time=int(head["start_ns"]) / 1e9 + offset,
                       sandbox=entry.name, pid=int(head["pid"]), ppid=int(head["ppid"]), uid=int(head["uid"]),
                       comm=str(head["comm"]), data=data, **fields)


class TracerDaemon:
    def __init__(self, spool: Path, idle_exit: float, sandboxes: SandboxMap | None = None) -> None:
        self.spool = spool
        self.idle_exit = idle_exit
        self.sandboxes = sandboxes or SandboxMap(engine_containers)
        self.writer = SpoolWriter(spool)
        self.assembler = RecordAssembler()
        self.links: dict[tuple[int, int], dict[str, Record]] = {}
        self.backlog: dict[int, list[Record]] = {}  # UTS inode -> records of a sandbox the engine has not listed yet
        self.backlog_since: dict[int, float] = {}
        self.dropped = 0  # records of namespaces no sandbox claimed
        self.offset = time.time() - time.monotonic()  # bpftrace's nsecs is CLOCK_MONOTONIC
        self.beats: collections.deque[int] = collections.deque(maxlen=2)
        self.lost = 0
        self.lines = 0  # bpftrace output lines read
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.last_busy = time.monotonic()
        self.started = read_stat(os.getpid())
        self.proc: subprocess.Popen[bytes] | None = None

    # ---- records -----------------------------------------------------------------------------------------------
    def handle(self, record: Record, retry: bool = True) -> None:
        entry = self.sandboxes.lookup(int(record.head["uts"]))
        if entry is None:
            inode = int(record.head["uts"])
            if retry and not self.sandboxes.known(inode):
                waiting = self.backlog.setdefault(inode, [])
                self.backlog_since.setdefault(inode, time.monotonic())
                if len(waiting) < BACKLOG_RECORDS:
                    waiting.append(record)
                else:
                    self.dropped += 1
            return
        if record.kind == "L":
            self._link(record, entry)
            return
        observation = _observation(record, entry, self.offset)
        if observation is not None:
            self.writer.write(entry.name, observation)

    def _link(self, record: Record, entry: SandboxEntry) -> None:
        """A symlink or hard link to a sensitive file is reported as an open of that file (`data.link`): it is how
        the file is reached later under an innocent name."""
        parts = self.links.setdefault(record.key, {})
        parts[record.fields[2]] = record
        if len(parts) < 2:
            return
        del self.links[record.key]
        target, name = parts["target"], parts["name"]
        base_dir = name.context.get("kernel_base") or name.context.get("base")
        link_path = container_paths.resolve(name.text, entry.init_pid, base_dir)
        if name.fields[0].startswith("symlink"):
            parent = link_path.rsplit("/", 1)[0] or "/"
            resolved = container_paths.resolve(target.text, entry.init_pid, parent)
        else:
            resolved = container_paths.resolve(target.text, entry.init_pid, base_dir)
        if not container_paths.is_sensitive(resolved):
            return
        observation = _observation(Record("O", record.head, [name.fields[0], "-100", "0"], resolved), entry,
                                   self.offset)
        if observation is not None:
            observation.data.update(link=link_path, raw_path=target.text)
            self.writer.write(entry.name, observation)

    def on_heartbeat(self, beat: Heartbeat) -> None:
        """Everything before the previous beat has been read (bpftrace drains its per-CPU buffers in turn, so one
        beat may overtake another CPU's earlier events by a little): complete those execs, move the watermark."""
        self.beats.append(beat.ktime)
        if len(self.beats) < 2:
            return
        safe = self.beats[0]
        for record in self.assembler.flush(before_ktime=safe):
            self.handle(record)
        self._retry_backlog()
        # records still waiting for their sandbox to be listed are not on disk: the watermark must not pass them
        waiting = [int(record.head["ktime"]) for records in self.backlog.values() for record in records[:64]]
        mark = min([safe, *(ktime - 1 for ktime in waiting)])
        write_heartbeat(self.spool, pid=os.getpid(), start_ticks=self.started.start_ticks if self.started else 0,
                        watermark=mark / 1e9 + self.offset, lost=self.lost,
                        backlog=sum(map(len, self.backlog.values())), dropped=self.dropped,
                        lines=self.lines)

    def on_lost(self, count: int) -> None:
        """Lost events cannot be attributed: every sandbox active now gets a `lost` record."""
        self.lost += count
        now = time.time()
        for name in self.sandboxes.names():
            self.writer.write(name, Observation(kind="lost", time=now, sandbox=name,
                                                data={"source": "ebpf", "events": count, "total": self.lost}))

    def _retry_backlog(self) -> None:
        """Records of namespaces the engine had not listed: handled once a refresh lists their sandbox, dropped
        after BACKLOG_SECONDS (a container that is not a sandbox, or already gone)."""
        if not self.backlog:
            return
        try:
            if not self.sandboxes.refresh():
                return
        except Exception as exc:  # noqa: BLE001 - engine hiccup: keep the backlog, try again at the next beat
            log.warning("engine unavailable: %s", exc)
            return
        now = time.monotonic()
        for inode in list(self.backlog):
            if self.sandboxes.known(inode):
                for record in self.backlog.pop(inode):
                    self.handle(record, retry=False)
                del self.backlog_since[inode]
            elif now - self.backlog_since[inode] > BACKLOG_SECONDS:
                self.dropped += len(self.backlog.pop(inode))
                del self.backlog_since[inode]

    @staticmethod
    def _capture_context(record: Record) -> None:
        """The process's directory and root, read now: by the time its exec's arguments are complete (or its
        sandbox is known) a short-lived process is gone."""
        pid, ppid = int(record.head["pid"]), int(record.head["ppid"])
        if record.kind in ("X", "O", "L"):
            dfd = int(record.fields[1])
            if dfd != container_paths.AT_FDCWD or not record.text.startswith("/"):
                record.context["base"] = container_paths.base_directory(pid, dfd, [ppid])

    def feed(self, line: str) -> None:
        self.lines += 1
        item = decode(line)
        if isinstance(item, Record):
            self._capture_context(item)
            for record in self.assembler.start(item):
                self.handle(record)
        elif isinstance(item, Part):
            for record in self.assembler.part(item):
                self.handle(record)
        elif isinstance(item, Heartbeat):
            self.on_heartbeat(item)
        elif isinstance(item, Lost):
            self.on_lost(item.count)
        elif item == "READY":
            (self.spool / PID_FILE).write_text(json.dumps(
                {"pid": os.getpid(), "start_ticks": self.started.start_ticks if self.started else 0}))

    # ---- threads -----------------------------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr_tail.append(line)
            if line.startswith("Lost ") and line.split()[1].isdigit():  # text-mode notice of dropped events
                self.on_lost(int(line.split()[1]))
            elif "MEMLOCK" not in line:
                log.warning("bpftrace: %s", line)

    def _housekeeping(self) -> None:
        """Idle exit, stop file, spool clean-up; every ~2 s, surviving engine hiccups."""
        assert self.proc is not None
        while self.proc.poll() is None:
            time.sleep(2.0)
            try:
                self.sandboxes.refresh(force=True)
                if self.sandboxes.running:
                    self.last_busy = time.monotonic()
                self.writer.clean(self.sandboxes.running)
            except Exception as exc:  # noqa: BLE001 - engine hiccup: try again
                log.warning("housekeeping: %s", exc)
            if time.monotonic() - self.last_busy > self.idle_exit or (self.spool / "stop").exists():
                self.proc.terminate()

    # ---- main loop ---------------------------------------------------------------------------------------------
    def run(self) -> int:
        _mount_tracefs()
        script = self.spool / "rock.bt"
        script.write_text(program())
        self.proc = subprocess.Popen(["bpftrace", "-f", "json", "-B", "line", str(script)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env={**os.environ, **bpftrace_environment()})
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        threading.Thread(target=self._housekeeping, daemon=True).start()
        buffer = b""
        fd = self.proc.stdout.fileno()
        while True:
            if not select.select([fd], [], [], 1.0)[0]:
                if self.proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                try:
                    self.feed(raw.decode("utf-8", "replace"))
                except Exception:
                    log.exception("record dropped")
        for record in self.assembler.flush():
            self.handle(record, retry=False)
        self.writer.close_all()
        code = self.proc.wait()
        (self.spool / "last-exit.log").write_text("\n".join(self.stderr_tail)[-4000:])
        return code


def serve(spool: Path, idle_exit: float) -> int:
    """Holds `spool/tracer.lock` for its lifetime: a second daemon exits at once."""
    spool.mkdir(parents=True, exist_ok=True)
    lock = open(spool / "tracer.lock", "w")  # noqa: SIM115 - held (and locked) for the daemon's lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    for stale in (PID_FILE, "heartbeat"):
        (spool / stale).unlink(missing_ok=True)
    try:
        return TracerDaemon(spool, idle_exit).run()
    finally:
        for name in (PID_FILE, "stop"):
            (spool / name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spool", type=Path, default=Path(os.environ.get("ROCK_TELEMETRY_DIR", "/run/rock/telemetry")))
    parser.add_argument("--idle-exit", type=float, default=300.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sys.exit(serve(args.spool, args.idle_exit))


if __name__ == "__main__":
    main()
