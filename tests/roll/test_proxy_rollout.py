"""agent=blackbox in a real rollout: the scheduler's env worker (a Ray actor) serves the proxy, the vLLM engine actor
answers, the iflow CLI runs in network-none sandboxes (rock-agent image), and the batch holds token-exact trajectories."""
from __future__ import annotations

from pathlib import Path

import pytest

from roll.config import load_config
from roll.proxy.config import BlackBoxAgentConfig
from roll.rollout.records import check_record, read_records, write_records
from roll.rollout.scheduler import RolloutScheduler
from roll.tasks.secret_word import generate

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SMALL = ["agent=blackbox", "agent.max_turns=2", "agent.sampling.max_tokens=24", "agent.max_total_tokens=48",
         "ray.num_cpus=2", "engine.num_cpus=0.5", "engine.max_model_len=768",
         "rollout.pool_size=2", "rollout.progress=false", "sandbox.command_timeout=10", "rollout.group_size=2",
         "rollout.groups_per_step=1"]


def test_a_rollout_with_the_black_box_agent(vllm_engines, agent_image, tiny_model_path: Path,
                                            tmp_path: Path) -> None:
    cfg = load_config("rollout", SMALL)
    assert isinstance(cfg.agent, BlackBoxAgentConfig)
    scheduler = RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, tiny_model_path, vllm_engines,
                                 list(generate(2, seed=5)), shuffle=False)
    version = vllm_engines.policy_version()
    with scheduler:
        batch = scheduler.collect(policy_version=version, timeout=300)
    assert batch.stats["episodes"] == 2 and batch.stats["filtered"] == 0, batch.stats
    write_records(batch.trajectories, tmp_path / "trajectories.jsonl")
    for traj in read_records(tmp_path / "trajectories.jsonl"):
        assert traj.metadata["agent"] == "blackbox" and traj.metadata["status"] == "ok"
        assert check_record(traj) == [], traj.id
        assert 1 <= len(traj.turns) <= 2 and traj.reward in (0.0, 1.0)
        assert sum(len(t.completion_ids) for t in traj.turns) <= 48
        assert {t.policy_version for t in traj.turns} == {version}
        assert all(len(t.completion_ids) == len(t.logprobs) for t in traj.turns)
        assert traj.metadata["proxy"]["statuses"].get("ok") == len(traj.turns)
