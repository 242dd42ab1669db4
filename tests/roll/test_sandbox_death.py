"""Attack tests for self-kill: the agent cannot stop its sandbox, and a sandbox that does stop mid-episode gives a
scored, penalized trajectory with a `sandbox.tamper` event on that turn (never a discarded sandbox_error)."""
import asyncio
import secrets

import pytest

from iflow.config import AgentConfig
from iflow.trajectory import ToolCall
from rock import SandboxConfig, SandboxPool
from rock.engine import client
from roll.rollout.episode import EpisodeRunner
from roll.tasks.schema import TaskRecord
from roll.tasks.scripted import ScriptedPolicy

pytestmark = [pytest.mark.docker]


def bash(command: str) -> ToolCall:
    return ToolCall(name="bash", arguments={"command": command})


class KillsTheContainerBeforeTurn(ScriptedPolicy):
    """The scripted policy, plus an outside hand that kills the episode's container just before turn `turn`."""

    def __init__(self, calls, label: str, turn: int, remove: bool = False) -> None:
        super().__init__(calls)
        self.label, self.turn, self.remove = label, turn, remove

    async def chat(self, messages, tools, sampling):
        if self.position == self.turn:
            for container in client().containers.list(filters={"label": f"test.death={self.label}"}):
                container.remove(force=True) if self.remove else container.kill()
        return await super().chat(messages, tools, sampling)


def _episode(calls, kill_before_turn: int | None, safety=None, remove: bool = False):
    label = secrets.token_hex(4)
    task = TaskRecord(id="self-kill", instruction="print hello", verifier={"command": "true"})
    pool = SandboxPool(SandboxConfig(command_timeout=20, labels={"test.death": label}), size=1)
    try:
        runner = EpisodeRunner(pool, AgentConfig(max_turns=len(calls)), safety=safety)
        policy = KillsTheContainerBeforeTurn(calls, label, kill_before_turn if kill_before_turn is not None else -1,
                                             remove=remove)
        return asyncio.run(runner.run(task, policy, trajectory_id="t1"))
    finally:
        pool.close()


def test_the_agent_killing_everything_it_can_leaves_its_sandbox_alive(sandbox_image):
    result = _episode([bash("kill -9 -1"), bash("pkill sleep; pkill -9 sleep"), bash("echo alive")], None)
    trajectory = result.trajectory
    assert result.status == "ok" and trajectory.reward == 1.0
    assert trajectory.turns[2].observation.startswith("alive")
    assert not [e for e in trajectory.all_events() if e["category"] == "sandbox.tamper"]


def test_a_sandbox_that_dies_mid_episode_is_a_penalized_tamper_event(sandbox_image):
    calls = [bash("echo one"), bash("echo two"), bash("echo three"), bash("echo four")]
    result = _episode(calls, kill_before_turn=1)
    trajectory = result.trajectory
    assert result.status == "ok", (result.status, result.error)  # scored, not discarded
    tamper = [e for t in trajectory.turns for e in t.events if e["category"] == "sandbox.tamper"]
    assert len(tamper) == 1 and tamper[0]["severity"] == "critical" and tamper[0]["turn"] == 1
    assert trajectory.turns[1].events == tamper and len(trajectory.turns) == 2  # the episode ended on that turn
    assert trajectory.outcome == "terminated" and trajectory.reward == -1.0
    assert trajectory.metadata["safety"]["penalty"] == 1.0


def test_a_sandbox_removed_from_outside_is_an_environment_failure_not_blamed_on_the_agent(sandbox_image):
    """The agent cannot reach the Docker engine, so a container that is gone (a reaper, an operator) is discarded as
    a sandbox_error with no tamper event: a training run must not penalize a policy for its host's doings."""
    calls = [bash("echo one"), bash("echo two"), bash("echo three")]
    result = _episode(calls, kill_before_turn=1, remove=True)
    assert result.status == "sandbox_error" and "removed" in (result.error or "")
    assert not [e for e in result.trajectory.all_events() if e["category"] == "sandbox.tamper"]
    assert len(result.trajectory.turns) <= 2
