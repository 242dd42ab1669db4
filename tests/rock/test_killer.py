"""The timeout killer kills what the timed-out command started, and nothing another session started."""
import threading
import time

import pytest

from rock import Sandbox, SandboxConfig

pytestmark = pytest.mark.docker


def _sleeps(sandbox: Sandbox) -> list[str]:
    return [p["args"] for p in sandbox.processes() if p["args"].startswith("sleep 3") and p["user"] == "agent"]


def test_timeout_spares_processes_another_session_started_meanwhile(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        sandbox.session("b")
        results = {}
        timed = threading.Thread(target=lambda: results.setdefault("a", sandbox.run("sleep 30", timeout=4)))
        timed.start()
        time.sleep(1.0)  # session b starts its processes after a's command began
        other = sandbox.run("sleep 300 >/dev/null 2>&1 & (sleep 301 >/dev/null 2>&1 &); echo started", session="b")
        assert other.output == "started\n"
        timed.join(30)
        assert results["a"].timed_out
        assert sorted(_sleeps(sandbox)) == ["sleep 300", "sleep 301"]


def test_two_sessions_timing_out_at_once_both_kill_cleanly(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        names = [f"s{i}" for i in range(3)]
        for name in names:
            sandbox.session(name)
        results, errors = {}, []

        def run(name: str) -> None:
            try:
                results[name] = sandbox.run("sleep 30 & sleep 31", timeout=2, session=name)
            except Exception as exc:  # noqa: BLE001 - the assertion below reports it
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors and all(results[name].timed_out for name in names)
        assert _sleeps(sandbox) == []
        assert all(sandbox.run("echo ok", session=name).output == "ok\n" for name in names)


def test_tooling_execs_and_new_sessions_wait_out_a_freeze(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        stop, errors, codes = threading.Event(), [], []

        def hammer() -> None:
            index = 0
            while not stop.is_set():
                try:
                    codes.append(sandbox.exec(["true"])[0])
                    if index % 5 == 0:
                        sandbox.run("true", session=f"new{index}")
                except Exception as exc:  # noqa: BLE001 - the assertion below reports it
                    errors.append(exc)
                index += 1

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            for _ in range(3):
                assert sandbox.run("sleep 30 & sleep 31", timeout=1).timed_out
        finally:
            stop.set()
            thread.join(60)
        assert errors == [] and codes and set(codes) == {0}
