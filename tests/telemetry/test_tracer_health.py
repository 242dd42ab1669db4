"""Daemon health: bounded open files, the engine off the hot path (and its hiccups survived), lost events
reported, spool files cleaned up, a pid file trusted only after checking the process, liveness from the heartbeat.
The unit tests drive the daemon's parts with a stand-in engine listing (`engine_stub`); the live tests check the
real daemon that `ensure_tracer` started."""
import json
import os
import subprocess
import sys
import time

import pytest

from rock.procfs import read_stat
from rock.telemetry.bpf_output import Record, decode
from rock.telemetry.events import Observation
from rock.telemetry.spool import ObservationReader, SpoolWriter, read_heartbeat, write_heartbeat
from rock.telemetry.tracer import SPOOL, ensure_tracer, stop_tracer, tracer_alive, tracer_pid
from rock.telemetry.tracer_daemon import TracerDaemon
from rock.telemetry.uts_map import SandboxMap, uts_inode


def observation(sandbox, n=0):
    return Observation(kind="exec", time=float(n), sandbox=sandbox, argv=[str(n)])


def open_files():
    return len(os.listdir("/proc/self/fd"))


def test_the_writer_keeps_a_bounded_number_of_files_open(tmp_path):
    writer = SpoolWriter(tmp_path, max_open=8)
    before = open_files()
    for n in range(300):
        writer.write(f"rock-{n % 150}", observation(f"rock-{n % 150}", n))
    assert len(writer.handles) == 8 and open_files() - before <= 8
    assert [o.argv for o in ObservationReader("rock-7", tmp_path).read()] == [["7"], ["157"]]
    writer.close_all()
    assert open_files() == before


def test_spool_files_of_gone_sandboxes_are_deleted(tmp_path):
    writer = SpoolWriter(tmp_path)
    for name in ("rock-alive", "rock-gone", "rock-fresh-gone", "rock-ancient"):
        writer.write(name, observation(name))
    old = time.time() - 120
    os.utime(tmp_path / "rock-gone.jsonl", (old, old))
    os.utime(tmp_path / "rock-ancient.jsonl", (time.time() - 2 * 86400,) * 2)
    removed = writer.clean(running={"rock-alive", "rock-ancient"}, grace=60, max_age=86400)
    assert sorted(removed) == ["rock-ancient", "rock-gone"]
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["rock-alive.jsonl", "rock-fresh-gone.jsonl"]
    assert "rock-gone" not in writer.handles


def engine_stub(calls, failures=0):
    """A stand-in for the engine's container listing: this process plays a sandbox's init."""
    def listing():
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise ConnectionError("engine hiccup")
        return [("rock-self", "cid")]
    return listing


def test_lookups_never_call_the_engine():
    calls = []
    sandboxes = SandboxMap(engine_stub(calls), pids_of=lambda cid: [os.getpid()])
    sandboxes.refresh(force=True)
    inode = uts_inode(os.getpid())
    assert all(sandboxes.lookup(inode).name == "rock-self" for _ in range(5000))
    assert sandboxes.lookup(inode + 1) is None and len(calls) == 1
    assert not sandboxes.refresh() and len(calls) == 1  # rate-limited


def test_a_removed_sandboxes_entry_never_takes_the_next_sandboxes_records(tmp_path):
    """The kernel gives a dead namespace's inode to the next one at once: the next sandbox's first records (its
    agent's first command) must not go to the removed sandbox's file, however recently that entry was checked."""
    init = subprocess.Popen(["sleep", "30"])  # the removed sandbox's init: in our UTS namespace, so "its" inode
    sandboxes = SandboxMap(lambda: [("rock-old", "cid")], pids_of=lambda cid: [init.pid])
    sandboxes.refresh(force=True)
    inode = uts_inode(os.getpid())
    assert sandboxes.lookup(inode).name == "rock-old"  # checked (and found alive) just now
    init.kill()
    init.wait()
    daemon = TracerDaemon(tmp_path, idle_exit=60, sandboxes=sandboxes)
    for line in _exec_lines(inode, 1000, ["cat", "/etc/shadow"]):  # the next sandbox's, at once
        daemon.feed(line)
    daemon.feed(json.dumps({"type": "printf", "data": "H\t2000\n"}))
    daemon.feed(json.dumps({"type": "printf", "data": "H\t3000\n"}))
    assert sandboxes.lookup(inode) is None and not sandboxes.known(inode)
    assert ObservationReader("rock-old", tmp_path).read() == []
    assert read_heartbeat(tmp_path)["backlog"] == 1  # kept for the sandbox the engine lists next


def _exec_lines(inode, ktime, argv):
    pid = os.getpid()
    head = f"{ktime}\t{pid}\t{pid}\t1\t1000\t0\t1\t1\t{inode}\t1\tbash\\x00"
    lines = [{"type": "printf", "data": f"X\t{head}\texecve\t-100\t0\t/bin/{argv[0]}\n"}]
    lines += [{"type": "printf", "data": f"A\t{ktime}\t{pid}\t{i}\t{arg}\n"} for i, arg in enumerate(argv)]
    return [json.dumps(line) for line in lines]


def test_the_daemon_survives_engine_hiccups_and_keeps_the_records(tmp_path):
    calls = []
    sandboxes = SandboxMap(engine_stub(calls, failures=2), refresh_every=0.0, pids_of=lambda cid: [os.getpid()])
    daemon = TracerDaemon(tmp_path, idle_exit=60, sandboxes=sandboxes)
    for line in _exec_lines(uts_inode(os.getpid()), 1000, ["ls", "-l"]):
        daemon.feed(line)
    for ktime in (2000, 3000, 4000, 5000):  # heartbeats: the exec completes, the backlog is retried
        daemon.feed(json.dumps({"type": "printf", "data": f"H\t{ktime}\n"}))
    assert len(calls) == 3  # two failures, then the listing that names the sandbox
    [seen] = ObservationReader("rock-self", tmp_path).read()
    assert seen.argv == ["ls", "-l"] and seen.data["ktime_ns"] == 1000 and seen.pid == os.getpid()
    assert read_heartbeat(tmp_path)["backlog"] == 0


def test_lost_events_become_lost_records_for_every_sandbox(tmp_path):
    calls = []
    sandboxes = SandboxMap(engine_stub(calls), pids_of=lambda cid: [os.getpid()])
    sandboxes.refresh(force=True)
    daemon = TracerDaemon(tmp_path, idle_exit=60, sandboxes=sandboxes)
    daemon.feed(json.dumps({"type": "lost_events", "data": {"events": 7}}))
    [lost] = ObservationReader("rock-self", tmp_path).read()
    assert lost.kind == "lost" and lost.data["events"] == 7 and daemon.lost == 7


class StderrOnly:
    """A stand-in process whose stderr bpftrace would fill (text-mode lost notices, warnings)."""
    def __init__(self, lines):
        self.stderr = iter(line.encode() for line in lines)


def test_stderr_is_drained_and_its_lost_notices_counted(tmp_path):
    daemon = TracerDaemon(tmp_path, idle_exit=60, sandboxes=SandboxMap(list))
    daemon.proc = StderrOnly(["WARNING: Addrspace mismatch\n", "Lost 12 events\n"] * 1000)
    daemon._drain_stderr()
    assert daemon.lost == 12000 and len(daemon.stderr_tail) == 200


def test_a_pid_file_naming_another_process_is_not_trusted(tmp_path):
    me = read_stat(os.getpid())
    for pid, start in [(os.getpid(), me.start_ticks), (os.getpid(), me.start_ticks + 1), (1, 0)]:
        (tmp_path / "ready").write_text(json.dumps({"pid": pid, "start_ticks": start}))
        assert tracer_pid(tmp_path) is None
    (tmp_path / "ready").write_text(str(os.getpid()))  # the old format: a bare pid
    assert tracer_pid(tmp_path) is None


def test_a_pid_file_is_trusted_for_the_process_it_names(tmp_path):
    # a stand-in that only looks like the daemon by its command line; it sleeps and is ended by this test
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m",
                                 "rock.telemetry.tracer_daemon", "--spool", str(tmp_path)])
    try:
        time.sleep(0.2)
        record = {"pid": stand_in.pid, "start_ticks": read_stat(stand_in.pid).start_ticks}
        (tmp_path / "ready").write_text(json.dumps(record))
        assert tracer_pid(tmp_path) == stand_in.pid
        assert not tracer_alive(tmp_path)  # no heartbeat
        write_heartbeat(tmp_path, pid=stand_in.pid, watermark=0.0)
        assert tracer_alive(tmp_path)
        assert not tracer_alive(tmp_path, stale_after=0.0)
    finally:
        stand_in.kill()
        stand_in.wait()
    assert tracer_pid(tmp_path) is None


def test_forged_lines_decode_to_nothing_but_their_own_record():
    forged = "x\nX\t1\t2\t3\t4\t0\t0\t0\t99\t0\txmrig\texecve\t-100\t0\t/usr/bin/xmrig"
    [line] = [json.dumps({"type": "printf", "data": f"A\t5\t6\t1\t{forged}\n"})]
    assert decode(line).text == forged
    assert decode("X\t1\t2\t3\t4\t0\t0\t0\t99\t0\txmrig\texecve\t-100\t0\t/usr/bin/xmrig") is None  # not JSON
    head = "1\t2\t2\t1\t1000\t0\t1\t1\t99\t1\tca\\x09t\\x00"
    record = decode(json.dumps({"type": "printf", "data": f"O\t{head}\topenat\t-100\t0\ta\tb\n"}))
    assert isinstance(record, Record) and record.head["comm"] == "ca\tt" and record.text == "a\tb"


@pytest.mark.docker
def test_the_live_daemon_is_verified_alive_and_its_watermark_moves():
    status = ensure_tracer()
    assert status.mode == "ebpf" and tracer_pid(SPOOL) == status.pid and tracer_alive(SPOOL)
    first = read_heartbeat(SPOOL)["watermark"]
    time.sleep(0.3)
    beat = read_heartbeat(SPOOL)
    assert beat["watermark"] > first and beat["pid"] == status.pid and time.time() - beat["updated"] < 1.0


@pytest.mark.docker
def test_a_lost_record_becomes_a_telemetry_lost_event_of_that_sandbox(watched):
    watched.turn(1, "true")
    lost = Observation(kind="lost", time=time.time(), sandbox=watched.sandbox.name,
                       data={"source": "ebpf", "events": 3, "total": 3})
    with (SPOOL / f"{watched.sandbox.name}.jsonl").open("a") as spool_file:  # as the daemon's on_lost writes it
        spool_file.write(lost.model_dump_json() + "\n")
    events = watched.monitor.poll(final=True)
    gaps = [e for e in events if e.category == "telemetry.lost"]
    assert len(gaps) == 1 and gaps[0].detail["events"] == 3 and watched.policy.verdict(gaps).penalty == 0


def _stand_in(argv_tail):
    """A sleeping process standing in for a daemon (or for an unrelated process a stale pid file names)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *argv_tail])


def test_stop_signals_only_a_verified_daemon(tmp_path):
    daemon_like = _stand_in(["-m", "rock.telemetry.tracer_daemon", "--spool", str(tmp_path)])
    other = _stand_in(["-m", "something.else", "--spool", str(tmp_path)])
    try:
        time.sleep(0.2)
        for process in (other, daemon_like):
            (tmp_path / "ready").write_text(json.dumps({"pid": process.pid,
                                                        "start_ticks": read_stat(process.pid).start_ticks}))
            stopped = stop_tracer(tmp_path, timeout=0.5)
            assert stopped == (process is daemon_like)
        assert daemon_like.wait(timeout=5) == -15  # it ignored the stop file: terminated, after verification
        assert other.poll() is None  # never signalled
    finally:
        for process in (daemon_like, other):
            process.kill()
            process.wait()
