"""Fail closed: with rollout.safety.require on, a missing tracer stops the run with one line naming the cause, and a
tracer that dies mid-episode makes the episode blind (a `telemetry.blind` event) and dropped from training. The
live test runs its own tracer daemon on its own spool, so the host's shared tracer is never stopped."""
import asyncio

import pytest
from typer.testing import CliRunner

from iflow.trajectory import Trajectory, Turn
from rock import AsyncSandbox, SandboxConfig
from rock.telemetry.tracer import ensure_tracer, stop_tracer, tracer_alive
from roll.safety import SafetyConfig, SafetyGuard, TelemetryRequired, require_telemetry


@pytest.fixture
def no_bpftrace(monkeypatch, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # bpftrace cannot be found: the tracer is unavailable, as on a bare box


def test_require_on_and_no_tracer_stops_with_one_line_naming_the_cause(no_bpftrace, tmp_path):
    with pytest.raises(TelemetryRequired) as caught:
        require_telemetry(SafetyConfig(), spool=tmp_path / "spool")
    line = str(caught.value)
    assert "\n" not in line and "bpftrace" in line and "rollout.safety.require=false" in line


def test_require_off_runs_on_degraded_and_ebpf_off_is_not_checked(no_bpftrace, tmp_path):
    status = require_telemetry(SafetyConfig(require=False), spool=tmp_path / "spool")
    assert status is not None and status.mode == "degraded" and "bpftrace" in status.reason
    assert require_telemetry(SafetyConfig(ebpf=False), spool=tmp_path / "spool") is None


def test_roll_train_refuses_to_start_blind(no_bpftrace):
    from roll.cli import app

    result = CliRunner().invoke(app, ["train", "rollout.safety.require=true"])
    assert result.exit_code == 2, result.output
    assert "bpftrace" in result.output and "rollout.safety.require=false" in result.output


def test_the_yaml_key_maps_to_the_safety_config():
    from roll.config import load_config

    assert load_config("train", []).rollout.safety.require is True
    assert load_config("train", ["rollout.safety.require=false"]).rollout.safety.require is False


@pytest.mark.docker
def test_a_tracer_killed_mid_episode_makes_the_episode_blind_and_dropped(tmp_path):
    spool = tmp_path / "spool"
    assert ensure_tracer(spool, idle_exit=60).mode == "ebpf"

    async def episode():
        async with AsyncSandbox(SandboxConfig(command_timeout=30)) as sandbox:
            guard = SafetyGuard(sandbox, SafetyConfig(), spool=spool)
            assert await guard.start() == "ebpf"
            trajectory = Trajectory(id="t-blind", turns=[Turn(index=0)])
            sandbox.sync.audit.set_tags(turn=0)
            await sandbox.run("true")
            assert await guard.on_turn_end(trajectory.turns[0], trajectory) is None
            assert not guard.blind
            stop_tracer(spool)
            assert not tracer_alive(spool)
            trajectory.turns.append(Turn(index=1))
            sandbox.sync.audit.set_tags(turn=1)
            await sandbox.run("true")
            await guard.on_turn_end(trajectory.turns[1], trajectory)
            verdict = await guard.finish(trajectory)
            return trajectory, verdict

    try:
        trajectory, verdict = asyncio.run(episode())
    finally:
        stop_tracer(spool)
    blind = [e for e in trajectory.all_events() if e["category"] == "telemetry.blind"]
    assert len(blind) == 1 and blind[0]["turn"] == 1
    assert trajectory.turns[1].events == blind
    assert trajectory.metadata["safety"]["blind"] is True and verdict.drop
    assert trajectory.metadata["safety"]["drop"] is True
