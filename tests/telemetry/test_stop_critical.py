"""Stop it while it happens: a critical event kills the running command as soon as the tracer reports it (not at
the turn's end), through the verified kill path; the event and the turn say so. Commands only on loopback, in a
sandbox with no network."""
import asyncio
import time

import pytest

from iflow.trajectory import Trajectory, Turn
from rock import AsyncSandbox, SandboxConfig
from rock.telemetry.events import make_event
from rock.telemetry.stopper import CriticalStopper
from roll.safety import SafetyConfig, SafetyGuard

pytestmark = [pytest.mark.docker]
BUSY_SECONDS = 20
MINER = (f"python3 -c 'import time\nt = time.time()\nwhile time.time() - t < {BUSY_SECONDS}: pass' "
         "-o stratum+tcp://127.0.0.1:3333")


@pytest.mark.parametrize("watched", [True], indirect=True)  # the monitor with stop_critical on (the default)
def test_a_miner_is_killed_while_it_runs_and_the_event_says_so(watched):
    started = time.monotonic()
    result, events = watched.turn(1, MINER, timeout=BUSY_SECONDS + 10)
    assert time.monotonic() - started < 5, "the miner ran on: it was not stopped when its exec was traced"
    assert result.exit_code != 0 and not result.timed_out
    mining = [e for e in events if e.category == "compute.mining"]
    assert mining and mining[0].turn == 1
    assert mining[0].detail["stopped_command"] is True and 0 <= mining[0].detail["stop_latency_s"] < 3
    assert watched.sandbox.run("echo alive").output.strip() == "alive"  # the session's shell survived the kill


@pytest.mark.parametrize("watched", [True], indirect=True)
def test_a_benign_busy_command_is_not_stopped(watched):
    result, events = watched.turn(1, "python3 -c 'import time\nt = time.time()\nwhile time.time() - t < 1.5: pass'")
    assert result.exit_code == 0 and not any(e.detail.get("stopped_command") for e in events)


def test_the_guard_notes_the_stop_on_the_turn_and_terminates():
    async def episode():
        async with AsyncSandbox(SandboxConfig(command_timeout=40)) as sandbox:
            guard = SafetyGuard(sandbox, SafetyConfig())
            assert await guard.start() == "ebpf"
            trajectory = Trajectory(id="t-stop", turns=[Turn(index=0)])
            sandbox.sync.audit.set_tags(turn=0)
            begun = time.monotonic()
            await sandbox.run(MINER)
            took = time.monotonic() - begun
            reason = await guard.on_turn_end(trajectory.turns[0], trajectory)
            await guard.finish(trajectory)
            return trajectory, reason, took

    trajectory, reason, took = asyncio.run(episode())
    assert took < 5 and reason is not None and "compute.mining" in reason
    assert "stopped by the safety monitor: compute.mining" in trajectory.turns[0].observation
    assert any(e["detail"].get("stopped_command") for e in trajectory.turns[0].events)


class FakeSession:
    """Unit-test stand-in for a shell session (the real kill path is tested above)."""

    def __init__(self, running: bool) -> None:
        self.running, self.kills = running, 0

    def kill_running(self) -> bool:
        self.kills += 1
        return self.running


def test_only_critical_categories_stop_and_an_idle_sandbox_marks_nothing():
    busy = FakeSession(True)
    stopper = CriticalStopper(lambda: [busy])
    egress = make_event("network.egress", "r", "m")
    assert not stopper.act([egress]) and busy.kills == 0
    mining = make_event("compute.mining", "stratum-url", "m", time=time.time() - 0.5)
    assert stopper.act([mining]) and mining.detail["stopped_command"] and mining.detail["stop_latency_s"] >= 0.5
    idle = make_event("compute.mining", "stratum-url", "m")
    assert not CriticalStopper(lambda: [FakeSession(False)]).act([idle]) and "stopped_command" not in idle.detail
