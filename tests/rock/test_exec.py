"""Sandbox.exec (one-off tooling processes) keeps to its timeout and its output cap."""
import time

import pytest

from rock import Sandbox, SandboxConfig

pytestmark = pytest.mark.docker


def test_exec_returns_status_and_output(sandbox):
    code, output = sandbox.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    # both streams are captured; Docker copies stdout and stderr from separate pipes, so their order may swap
    assert code == 3 and sorted(output.splitlines()) == ["err", "out"] and output.endswith("\n")


def test_exec_is_killed_at_its_timeout_with_what_it_started(sandbox):
    started = time.monotonic()
    code, output = sandbox.exec(["sh", "-c", "echo begun; sleep 300 & sleep 301"], timeout=1.5)
    assert code == 124 and output == "begun\n" and time.monotonic() - started < 10
    left = [p["args"] for p in sandbox.processes() if p["args"].startswith("sleep 30")]
    assert left == []


def test_exec_output_is_capped(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        code, output = sandbox.exec(["sh", "-c", "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo end"],
                                    max_output_bytes=64 * 1024)
        assert code == 0 and len(output) < 70 * 1024 and "bytes of output cut" in output
        assert output.endswith("end\n") and output.startswith("xxxx")
