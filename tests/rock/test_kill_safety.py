"""Attack tests: a command that times out and never hands the shell back (`exec sleep 30`) must not make rock signal
anything outside the container, whatever the session believes its shell's host pid to be."""
import subprocess

import pytest

from rock import Sandbox, SandboxConfig
from rock.procfs import read_stat
from rock.session import SessionDied, ShellSession

pytestmark = pytest.mark.docker


@pytest.fixture
def canary():
    """A process on the host, outside every container: it must survive whatever a sandbox command does."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def _run_shell_stealing_command(sandbox: Sandbox) -> None:
    result = sandbox.run("exec sleep 30", timeout=1.5)
    assert result.timed_out and result.session_restarted
    assert sandbox.run("echo still here").output == "still here\n"


def test_missing_host_pid_signals_nothing_outside_the_container(docker_engine, canary):
    with Sandbox(SandboxConfig()) as sandbox:
        session = sandbox.session()
        session.host_pid = session.host_start_ticks = None  # as when exec_inspect reported no pid
        _run_shell_stealing_command(sandbox)
        assert canary.poll() is None, "a host process outside the container was killed"


def test_forged_host_pid_of_a_host_process_is_never_signalled(docker_engine, canary):
    with Sandbox(SandboxConfig()) as sandbox:
        session = sandbox.session()
        # The worst wrong belief: a live host process, with its true start time, that is not in the container.
        session.host_pid, session.host_start_ticks = canary.pid, read_stat(canary.pid).start_ticks
        _run_shell_stealing_command(sandbox)
        assert canary.poll() is None, "a host process outside the container was killed"


def test_host_pid_is_found_in_the_container_when_exec_inspect_reports_none(docker_engine, monkeypatch):
    with Sandbox(SandboxConfig()) as sandbox:
        real_inspect = sandbox.session().api.exec_inspect

        def exec_inspect_without_pid(exec_id):
            return {key: value for key, value in real_inspect(exec_id).items() if key != "Pid"}

        session = ShellSession(sandbox.session().api, sandbox.id, "probe", "agent", "/workspace", {}, 4096)
        monkeypatch.setattr(session.api, "exec_inspect", exec_inspect_without_pid)
        session.open()
        try:
            assert session.host_pid is not None and session.host_pid in sandbox.host_pids()
            assert session.verified_shell() == (session.host_pid, read_stat(session.host_pid).start_ticks)
            assert session.run("sleep 30", timeout=1).timed_out  # killed from the host with the verified pid
        finally:
            session.close()


def test_a_session_without_a_verifiable_host_pid_fails_closed(docker_engine, monkeypatch):
    with Sandbox(SandboxConfig()) as sandbox:
        monkeypatch.setattr("rock.session.innermost_pid", lambda pid: None)  # no process answers to the shell's pid
        session = ShellSession(sandbox.session().api, sandbox.id, "probe", "agent", "/workspace", {}, 4096)
        with pytest.raises(SessionDied, match="no verified host pid"):
            session.open(timeout=2)


def test_session_shell_pids_are_the_verified_shells(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        sandbox.session("other")
        shells = sandbox.session_shell_pids()
        assert len(shells) == 2 and shells <= set(sandbox.host_pids())
        sandbox.session("other").host_start_ticks += 1  # no longer provably the same process
        assert len(sandbox.session_shell_pids()) == 1
