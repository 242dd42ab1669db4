import os
import subprocess
import sys

from rock.procfs import parse_stat, read_stat, same_process, uptime


def test_parse_stat_handles_a_comm_with_parentheses_and_spaces():
    text = "4242 (evil) 1 2 (x) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3\n"
    stat = parse_stat(text)
    assert (stat.pid, stat.ppid, stat.start_ticks, stat.comm) == (4242, 17, 987654, "evil) 1 2 (x")


def test_read_stat_of_a_real_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stat = read_stat(child.pid)
        assert stat is not None and stat.ppid == os.getpid() and stat.comm.startswith("python")
        assert 0 < stat.start_seconds <= uptime() + 1
        assert same_process(child.pid, stat.start_ticks)
        assert not same_process(child.pid, stat.start_ticks + 1)
    finally:
        child.kill()
        child.wait()
    assert read_stat(child.pid) is None
