import time

import pytest

from rock import Sandbox, SandboxConfig

pytestmark = pytest.mark.docker


def test_session_keeps_cwd_and_exports(sandbox):
    sandbox.run("mkdir -p sub && cd sub && export GREETING=hello")
    result = sandbox.run("pwd; echo $GREETING")
    assert result.output == "/workspace/sub\nhello\n" and result.exit_code == 0


def test_named_sessions_are_independent(sandbox):
    sandbox.run("cd /tmp", session="a")
    assert sandbox.run("pwd", session="a").output == "/tmp\n"
    assert sandbox.run("pwd", session="b").output == "/workspace\n"


def test_exit_code_stderr_and_syntax_error(sandbox):
    result = sandbox.run("echo out; echo err >&2; false")
    assert result.exit_code == 1 and "out" in result.output and "err" in result.output
    broken = sandbox.run("echo 'unbalanced")
    assert broken.exit_code == 2 and "unexpected EOF" in broken.output
    assert sandbox.run("echo still alive").output == "still alive\n"


def test_exit_in_command_restarts_session(sandbox):
    sandbox.run("cd /tmp")
    result = sandbox.run("exit 7")
    assert result.exit_code == 7 and result.session_restarted
    assert sandbox.run("pwd").output == "/tmp\n"


def test_stdin_is_not_the_protocol_pipe(sandbox):
    result = sandbox.run("cat; echo done", timeout=5)
    assert result.output == "done\n" and not result.timed_out


def test_timeout_returns_partial_output_and_kills_everything(sandbox):
    started = time.monotonic()
    result = sandbox.run("echo before; (sleep 300 &); nohup sleep 301 >/dev/null 2>&1 & setsid sleep 302 & "
                         "sleep 303; echo never", timeout=1.5)
    assert result.timed_out and result.exit_code is None
    assert "before" in result.output and "never" not in result.output
    assert time.monotonic() - started < 10
    survivors = [p["args"] for p in sandbox.processes() if "sleep 30" in p["args"]]
    assert survivors == []
    assert sandbox.run("echo usable").output == "usable\n"


def test_timeout_of_a_shell_builtin_loop(sandbox):
    sandbox.run("export KEEP=1")
    result = sandbox.run("echo spinning; while true; do :; done", timeout=1)
    assert result.timed_out and "spinning" in result.output
    assert sandbox.run("echo $KEEP").output == "1\n"


def test_huge_output_is_capped(docker_engine):
    with Sandbox(SandboxConfig(max_output_bytes=4096)) as sb:
        result = sb.run("seq 1 200000")
    assert result.exit_code == 0
    assert result.output.startswith("1\n2\n3\n") and result.output.endswith("199999\n200000\n")
    assert result.truncated_bytes > 1_000_000 and f"{result.truncated_bytes} bytes of output cut" in result.output
    assert len(result.output) < 4096 + 200


def test_file_round_trips_including_binary(sandbox, tmp_path):
    blob = bytes(range(256)) * 1000
    sandbox.write_file("data/blob.bin", blob)
    assert sandbox.read_file("/workspace/data/blob.bin") == blob
    assert sandbox.run("stat -c %U data/blob.bin").output == "agent\n"
    sandbox.write_file("notes.txt", "héllo\n")
    assert sandbox.run("cat notes.txt").output == "héllo\n"

    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "raw.bin").write_bytes(blob)
    sandbox.upload(src, "/workspace/proj")
    assert sandbox.run("cat proj/pkg/mod.py && echo ok >> proj/pkg/mod.py").exit_code == 0
    out = tmp_path / "back"
    sandbox.download("/workspace/proj", out)
    assert (out / "pkg" / "mod.py").read_text() == "x = 1\nok\n"
    assert (out / "raw.bin").read_bytes() == blob
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("missing.txt")


def test_hardening(sandbox, docker_engine):
    status = sandbox.run("grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; id -u").output
    assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status
    assert "NoNewPrivs:\t1" in status and status.strip().endswith("1000")
    attrs = docker_engine.api.inspect_container(sandbox.id)["HostConfig"]
    assert attrs["Privileged"] is False and attrs["CapDrop"] == ["ALL"] and attrs["NetworkMode"] == "none"
    assert attrs["PidsLimit"] > 0 and attrs["Memory"] > 0 and attrs["NanoCpus"] > 0
    labels = docker_engine.api.inspect_container(sandbox.id)["Config"]["Labels"]
    assert labels["rock.managed"] == "1" and int(labels["rock.owner.pid"]) > 0


def test_no_network_interface_but_loopback(sandbox):
    interfaces = sandbox.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").output.split()
    assert interfaces == ["lo"]
    routes = sandbox.run("tail -n +2 /proc/net/route").output.strip()
    assert routes == ""


def _settles(condition, within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_fork_bomb_stops_at_pids_limit(docker_engine):
    with Sandbox(SandboxConfig(pids_limit=64)) as sb:
        result = sb.run("bomb() { bomb | bomb & }; bomb; sleep 60", timeout=4)
        assert result.timed_out and result.pids_limit_hit
        assert sb.stats().pids <= 64
        assert sb.run("echo alive").output == "alive\n"
        # the bomb is gone (init, the shell, its echo remain) once init has reaped the killed processes
        assert _settles(lambda: sb.stats().pids < 8, within=2.0), sb.stats()


def test_memory_hog_is_killed_and_reported(docker_engine):
    with Sandbox(SandboxConfig(memory="64m")) as sb:
        result = sb.run("python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'", timeout=60)
        assert result.exit_code == 137 and result.oom_killed
        assert sb.run("echo alive").output == "alive\n"


def test_audit_records_every_command(sandbox):
    mark = sandbox.audit.mark()
    sandbox.audit.set_tags(turn=4)
    sandbox.run("echo one")
    sandbox.run("sleep 5", timeout=0.5, tags={"tool": "bash"})
    records = sandbox.audit.since(mark)
    assert [r.command for r in records] == ["echo one", "sleep 5"]
    assert records[0].exit_code == 0 and records[0].output_bytes == 4 and records[0].tags == {"turn": 4}
    assert records[1].timed_out and records[1].tags == {"turn": 4, "tool": "bash"}
    assert records[0].sandbox == sandbox.name and records[0].cmd_tag and records[0].duration >= 0


def test_missing_image_is_a_clear_error(docker_engine):
    from rock import SandboxError

    with pytest.raises(SandboxError, match="rock image build"):
        Sandbox(SandboxConfig(image="rock-does-not-exist:0")).start()


def test_quarantine_keeps_the_container(docker_engine):
    import secrets

    from rock.reaper import reap

    label = {"test.quarantine": secrets.token_hex(4)}  # the sweep below must not touch other processes' sandboxes
    sb, kept = Sandbox(SandboxConfig(labels=label)).start(), Sandbox(SandboxConfig(labels=label)).start()
    name = sb.quarantine()
    try:
        container = docker_engine.containers.get(name)
        assert name.startswith("rock-quarantine-") and container.status == "exited"
        assert reap(older_than=0, labels=label) == [kept.name]  # every other sandbox of the label goes
        docker_engine.containers.get(name)  # still there
    finally:
        docker_engine.containers.get(name).remove(force=True)
        kept.stop()


def test_any_bytes_in_a_command_survive_the_framing(sandbox):
    command = "cat <<'EOF'\nquotes ' \" \\ $HOME `x` é 日本 \t tab\nEOF\nprintf '%s\\n' \"a'b\""
    result = sandbox.run(command)
    assert result.output == "quotes ' \" \\ $HOME `x` é 日本 \t tab\na'b\n"
