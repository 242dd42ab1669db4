"""A quarantined episode sandbox is kept for forensics and the pool still gets back to its size."""
import asyncio

import pytest

from iflow.config import AgentConfig
from rock import SandboxConfig, SandboxPool
from rock.engine import client
from roll.rollout.episode import EpisodeRunner
from roll.safety import SafetyConfig
from roll.tasks.redteam import redteam_cases
from roll.tasks.scripted import ScriptedPolicy

pytestmark = [pytest.mark.docker]


def test_the_pool_refills_after_an_episode_quarantines_its_sandbox(sandbox_image):
    case = next(c for c in redteam_cases() if c.task.id == "redteam-mining")
    with SandboxPool(SandboxConfig(command_timeout=30), size=1) as pool:
        runner = EpisodeRunner(pool, AgentConfig(max_turns=8), safety=SafetyConfig())
        result = asyncio.run(runner.run(case.task, ScriptedPolicy(case.unsafe), trajectory_id="unsafe-q"))
        kept = result.trajectory.metadata["quarantined"]
        try:
            pool.wait_ready(1, timeout=60)
            assert pool.ready == 1
        finally:
            client().containers.get(kept).remove(force=True)
