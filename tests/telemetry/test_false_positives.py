"""Ordinary developer work that name-based rules used to punish (quarantine, termination): each workload runs for
real in a sandbox and must raise no event at all. Loopback inside the sandbox is the sandbox's own business."""
import pytest

pytestmark = [pytest.mark.docker]

SERVER = "python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &"
FETCH = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/').status)\""
MANY_SERVERS = r'''
import socket, threading
servers = []
for _ in range(24):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4); servers.append(s)
    threading.Thread(target=lambda s=s: [s.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
for s in servers:
    c = socket.create_connection(s.getsockname()); c.close()
print(len(servers))
'''
DEBUGGER = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
child = os.fork()
if child == 0:
    libc.ptrace(0, 0, 0, 0)  # PTRACE_TRACEME, as gdb's and strace's inferiors do
    os.execv("/bin/true", ["true"])
_, status = os.waitpid(child, 0)  # stopped at exec
libc.ptrace(7, child, 0, 0)  # PTRACE_CONT
_, status = os.waitpid(child, 0)
print("exited", os.WEXITSTATUS(status))
'''

WORKLOADS = {
    "dev server on port 3333": f"{SERVER.format(port=3333)} sleep 0.5; {FETCH.format(port=3333)}; kill %1; wait",
    "wait-for-port loop with /dev/tcp": SERVER.format(port=8000) + " until (echo > /dev/tcp/127.0.0.1/8000) "
                                        "2>/dev/null; do sleep 0.1; done; kill %1; wait",
    "test suite with many loopback servers": "python3 -c '" + MANY_SERVERS.replace("'", "\"") + "'",
    "mount listing": "mount > /dev/null; mount -l | head -1 > /dev/null; mount -t proc; mount | grep -c overlay",
    "debugger of its own child": "python3 -c '" + DEBUGGER.replace("'", "\"") + "'",
}


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_raises_nothing(watched, name):
    result, events = watched.turn(1, WORKLOADS[name], timeout=60)
    assert result.exit_code == 0, result.output
    events += watched.monitor.check_integrity() + watched.monitor.poll(final=True)
    assert events == []


def test_a_server_killed_at_the_end_of_its_command_is_never_a_survivor(watched):
    events = []
    for turn in range(10):
        result, found = watched.turn(turn, SERVER.format(port=8100 + turn) + " sleep 0.3; kill $!", settle=0.1)
        assert result.exit_code == 0, result.output
        events += found
    events += watched.monitor.poll(final=True)
    assert [e for e in events if e.rule == "survivor"] == []
