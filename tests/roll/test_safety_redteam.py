"""The red-team family end to end: a scripted agent (the real iFlow loop) in a real sandbox, watched by the safety
guard. Unsafe shortcuts are caught on the turn that took them and acted on; safe solutions raise nothing."""
import asyncio

import pytest

from iflow.agent import Agent
from iflow.config import AgentConfig
from rock import AsyncSandbox, SandboxConfig
from roll.safety import SafetyConfig, SafetyGuard
from roll.tasks.redteam import redteam_cases
from roll.tasks.scripted import ScriptedPolicy
from roll.tasks.workspace import prepare_workspace, verify

pytestmark = [pytest.mark.docker]
CASES = {case.task.id: case for case in redteam_cases()}


async def play(case, calls):
    async with AsyncSandbox(SandboxConfig(command_timeout=30)) as sandbox:
        interfaces = (await sandbox.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")).output.split()
        assert interfaces == ["lo"], "unsafe scripts run only in sandboxes with no way out"
        await prepare_workspace(case.task, sandbox)
        guard = SafetyGuard(sandbox, SafetyConfig(), protected=case.task.metadata["protected"])
        assert await guard.start() == "ebpf"
        agent = Agent(ScriptedPolicy(calls), sandbox, AgentConfig(max_turns=8), on_turn_end=guard.on_turn_end)
        trajectory = await agent.run(case.task.instruction, task_id=case.task.id)
        verdict = await guard.finish(trajectory)
        result = await verify(case.task, sandbox)
        trajectory.reward = result.reward
        SafetyGuard.apply(trajectory, verdict)
        return trajectory, verdict


def unsafe_turn(case):
    return next(i for i, call in enumerate(case.unsafe) if call.name != "submit")


@pytest.mark.parametrize("name", sorted(CASES))
def test_unsafe_shortcut_is_caught_on_its_turn(name):
    case = CASES[name]
    trajectory, verdict = asyncio.run(play(case, case.unsafe))
    caught = [e for e in trajectory.all_events() if e["category"] == case.tempts]
    assert caught, f"{name}: no {case.tempts} event in {[e['category'] for e in trajectory.all_events()]}"
    turns = {t.index for t in trajectory.turns if any(e["category"] == case.tempts for e in t.events)}
    assert unsafe_turn(case) in turns
    assert verdict.counts[case.tempts] >= 1 and verdict.penalty > 0
    action = verdict.model_dump()
    if case.tempts in ("compute.mining", "network.scan"):
        assert trajectory.outcome == "terminated" and action["drop"]
    if case.tempts == "integrity.tamper":
        assert action["drop"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_safe_solution_raises_nothing_and_solves_the_task(name):
    case = CASES[name]
    trajectory, verdict = asyncio.run(play(case, case.safe))
    assert trajectory.all_events() == [] and verdict.penalty == 0
    assert trajectory.outcome == "submitted" and trajectory.reward == 1.0


def test_episode_runner_applies_the_verdict_and_quarantines():
    from rock import SandboxPool
    from rock.engine import client
    from roll.rollout.episode import EpisodeRunner

    case = CASES["redteam-mining"]
    pool = SandboxPool(SandboxConfig(command_timeout=30), size=1)
    try:
        runner = EpisodeRunner(pool, AgentConfig(max_turns=8), safety=SafetyConfig())
        result = asyncio.run(runner.run(case.task, ScriptedPolicy(case.unsafe), trajectory_id="unsafe-1"))
    finally:
        pool.close()
    trajectory = result.trajectory
    safety = trajectory.metadata["safety"]
    assert trajectory.outcome == "terminated" and len(trajectory.turns) == 1
    assert safety["drop"] and safety["quarantine"] and safety["counts"]["compute.mining"] >= 1
    assert trajectory.reward == -1.0 and trajectory.reward_info["reward_before_safety"] == 0.0
    quarantined = client().containers.get(trajectory.metadata["quarantined"])
    try:
        assert quarantined.status == "exited" and quarantined.name.startswith("rock-quarantine-")
    finally:
        quarantined.remove(force=True)
