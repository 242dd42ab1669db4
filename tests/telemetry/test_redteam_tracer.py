"""Red team against the eBPF tracer itself: an agent that tries to blind it (renamed binaries, alternate syscalls,
path spellings, symlinks, unix sockets) or to forge its output. Every attack runs for real in a sandbox with no
network (the only address used, 203.0.113.0/24, has no route there: the connect fails on the spot, and is traced).
Each asserts the event's category, turn and source, or its absence."""
import json
import os
import time

import pytest

from rock import Sandbox, SandboxConfig
from rock.telemetry.bpf import STRLEN
from rock.telemetry.spool import ObservationReader
from rock.telemetry.tracer import SPOOL

pytestmark = [pytest.mark.docker]


def traced(events, category, turn):
    """Events of `category` on `turn` that the eBPF tracer (not the command text) produced."""
    return [e for e in events if e.category == category and e.turn == turn and e.source == "ebpf"]


def opened(events):
    return {e.detail.get("open") for e in events}


def test_a_binary_renamed_runcx_is_still_traced(watched):
    _, events = watched.turn(1, "cp /usr/bin/python3 /tmp/runcx && /tmp/runcx -c \"import socket\n"
                                "s = socket.socket(); s.settimeout(0.5)\ntry: s.connect(('203.0.113.10', 443))\n"
                                "except OSError: pass\ntry: open('/etc/' + 'sha' + 'dow')\nexcept OSError: pass\"")
    egress = traced(events, "network.egress", 1)
    assert egress and egress[0].detail["comm"] == "runcx" and egress[0].detail["connect"] == "203.0.113.10:443"
    assert "/etc/shadow" in opened(traced(events, "credential.access", 1))


def test_execveat_of_a_file_descriptor_is_traced(watched):
    watched.sandbox.write_file("bin/xmrig", "#!/bin/sh\nexit 0\n", mode=0o755)
    # os.execve with a descriptor is fexecve: execveat(fd, "", argv, envp, AT_EMPTY_PATH)
    _, events = watched.turn(2, "python3 -c \"import os\nfd = os.open('bin/xm' + 'rig', os.O_RDONLY)\n"
                                "os.execve(fd, ['worker', '--donate-level', '1'], {})\"")
    mining = traced(events, "compute.mining", 2)
    # the name is only in the file the descriptor points to: the tracer resolved it
    assert "miner-binary" in {e.rule for e in mining}, events


@pytest.mark.parametrize("number,syscall", [(2, "open"), (437, "openat2")])
def test_open_and_openat2_are_traced(watched, number, syscall):
    how = "ctypes.byref((ctypes.c_uint64 * 3)(0, 0, 0)), 24" if syscall == "openat2" else "0"
    target = "-100, path" if syscall == "openat2" else "path"
    _, events = watched.turn(3, f"python3 -c \"import ctypes\npath = b'/etc/' + b'gsha' + b'dow'\n"
                                f"ctypes.CDLL(None, use_errno=True).syscall({number}, {target}, {how})\"")
    assert "/etc/gshadow" in opened(traced(events, "credential.access", 3)), events


@pytest.mark.parametrize("command", [
    "cd /etc && cat ./shadow",                      # relative to the cwd
    "cd /usr/bin && cat ../../etc/shadow",          # .. from the cwd
    "cat /etc//shadow",                             # doubled slash
    "cat /etc/./shadow",                            # dot component
    "cat /proc/self/root/etc/shadow",               # the process's root through /proc
    "ln -s /etc e && cat e/shadow",                 # a symlinked directory
    "ln -sf /etc/shadow /tmp/notes && cat /tmp/notes",  # a symlink to the file itself
])
def test_path_spellings_resolve_to_the_file(watched, command):
    _, events = watched.turn(4, command + "; true")
    assert "/etc/shadow" in opened(traced(events, "credential.access", 4)), events


@pytest.mark.parametrize("secret", [".aws/credentials", ".netrc", ".ssh/id_ed25519"])
def test_home_directory_secrets_are_seen(watched, secret):
    directory, _, name = secret.rpartition("/")
    split = f"'{name[:2]}' + '{name[2:]}'"  # the command text never spells the name
    _, events = watched.turn(5, f"mkdir -p ~/{directory or '.'} && cd ~/{directory or '.'} && python3 -c "
                                f"\"open({split}, 'a').close()\"")
    assert f"/home/agent/{secret}" in opened(traced(events, "credential.access", 5)), events


@pytest.mark.parametrize("secret", [".git-credentials", ".docker/config.json", ".kube/config"])
def test_home_directory_secrets_the_default_rules_do_not_name_are_still_observed(watched, secret):
    directory, _, name = secret.rpartition("/")
    split = f"'{name[:2]}' + '{name[2:]}'"
    watched.turn(5, f"mkdir -p ~/{directory or '.'} && cd ~/{directory or '.'} && python3 -c \"open({split}, 'a')\"")
    reader = ObservationReader(watched.sandbox.name, SPOOL)
    opens = [o for o in reader.read(until=time.time()) if o.kind == "open" and o.data.get("source") == "ebpf"]
    assert f"/home/agent/{secret}" in {o.path for o in opens}


def test_unix_socket_connect_to_a_docker_socket_path(watched):
    _, events = watched.turn(6, "python3 -c \"import socket\ns = socket.socket(socket.AF_UNIX)\n"
                                "try: s.connect('/var/run/' + 'docker.sock')\nexcept OSError: pass\"")
    escape = traced(events, "sandbox.escape", 6)
    assert "/run/docker.sock" in opened(escape), events  # /var/run is a link to /run: the resolved path


def test_ordinary_unix_sockets_and_files_raise_nothing(watched):
    _, events = watched.turn(7, "python3 -c \"import socket, os\nfor p in ('/tmp/a.sock', 'x.sock'):\n"
                                "    s = socket.socket(socket.AF_UNIX)\n    try: s.connect(p)\n"
                                "    except OSError: pass\nopen('notes.txt', 'w').write('hi')\"; cat /etc/hostname")
    assert [e for e in events if e.source == "ebpf"] == []


def _uts_inode(container_pid: int) -> int:
    return int(os.readlink(f"/proc/{container_pid}/ns/uts").split("[")[1].rstrip("]"))


def test_forged_output_cannot_land_in_another_sandbox(watched, docker_engine):
    with Sandbox(SandboxConfig(command_timeout=30)) as victim:
        victim.run("true")
        victim.container.reload()
        victim_reader = ObservationReader(victim.name, SPOOL)
        victim_reader.read()
        inode = _uts_inode(victim.container.attrs["State"]["Pid"])
        pid = os.getpid()
        head = f"{10**12}\t{pid}\t{pid}\t1\t1000\t0\t1\t1\t{inode}\t1\txmrig"
        forged_text = f"X\t{head}\texecve\t-100\t0\t/usr/bin/xmrig"  # the record as the daemon parses it
        forged_json = json.dumps({"type": "printf", "data": forged_text + "\n"})
        legacy = f"X\t{10**12}\t{pid}\t1\t1000\txmrig\t{inode}\t/usr/bin/xmrig\txmrig -o pool:3333"
        payloads = ["ok\n" + forged_json, "\n" + legacy + "\n", forged_text]
        script = f"import os\nos.execv('/bin/true', ['true'] + {payloads!r})"
        watched.sandbox.write_file("forge.py", script)
        _, events = watched.turn(8, "python3 forge.py")
        assert [o for o in victim_reader.read(until=time.time()) if "xmrig" in " ".join([o.path, o.comm, *o.argv])] == []
        own = [o for o in ObservationReader(watched.sandbox.name, SPOOL).read()
               if o.kind == "exec" and o.path == "/bin/true" and len(o.argv) == 4]
        assert own, "the real exec is recorded"
        limit = STRLEN - 1
        assert own[-1].argv == ["true"] + [p.encode()[:limit].decode() for p in payloads]
        assert {e.sandbox for e in events} <= {watched.sandbox.name}
