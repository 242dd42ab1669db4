"""IPA acts when a batch takes more than one optimizer step (trainer.mini_batches: 2) and failures score -1: the
second mini-batch sees ρ_c ≠ 1 (the first step moved π_θ away from π_old), and ratio_*, clip_frac, chunk_mask_frac
and grad_norm come back for the RL step, through the real DeepSpeed trainer actor on the tiny model."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from iflow.trajectory import Trajectory, Turn
from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.trainer.batch import build_samples
from roll.trainer.update import attach, loss_params, prepare, run_update

IPA_METRICS = ("ratio_mean", "ratio_max", "clip_frac", "chunk_mask_frac", "grad_norm")


def _trajectories(vocab: int, n: int = 8, seed: int = 0) -> list[Trajectory]:
    """Two-turn episodes in groups of four; every other one failed (verifier reward 0)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [rng.randrange(5, vocab - 10) for _ in range(rng.randint(4, 8))]
        turns = []
        for k in range(2):
            completion = [rng.randrange(5, vocab - 10) for _ in range(rng.randint(3, 9))]
            turns.append(Turn(index=k, prompt_ids=list(prompt), completion_ids=completion,
                              logprobs=[0.0] * len(completion)))
            prompt = prompt + completion + [rng.randrange(5, vocab - 10) for _ in range(3)]
        out.append(Trajectory(id=f"t{i}", task_id=f"g{i // 4}", group_id=f"g{i // 4}", turns=turns,
                              reward=float(i % 2 == 0)))
    return out


@pytest.fixture(scope="module")
def trainer(ray_local, tiny_model_path: Path):
    from roll.trainer.group import TrainerGroup

    cfg = TrainerConfig(world_size=1, zero_stage=2, lr=5e-3, max_tokens_per_microbatch=64, mini_batches=2, seed=0)
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=4)
    try:
        yield group, cfg
    finally:
        group.shutdown()


def test_two_mini_batches_move_the_chunk_ratio_and_report_ipa_metrics(trainer, tiny_model_path: Path) -> None:
    from transformers import AutoConfig

    group, cfg = trainer
    algo = AlgorithmConfig(name="ipa", failure_reward=-1.0)
    trajectories = _trajectories(AutoConfig.from_pretrained(tiny_model_path).vocab_size)
    samples = build_samples(trajectories, error_masking=False, failure_reward=algo.failure_reward).samples
    assert sorted({s.reward for s in samples}) == [-1.0, 1.0]
    update = prepare(samples, algo, cfg, pad_id=0)
    assert len(update.plan) == 2
    attach(update, group.compute_logprobs(update.plan), "old_logp")
    for mini in update.plan:  # the behaviour policy is the policy itself (as a float32 engine would record)
        for rank in mini:
            for mb in rank:
                mb.engine_logp = mb.old_logp.clone()

    params = loss_params(algo)
    per_step = [group.train_step(mini, algo.name, params, denominator)
                for mini, denominator in zip(update.plan, update.denominators)]
    for metrics in per_step:
        assert set(IPA_METRICS) <= set(metrics)
        assert 0.0 <= metrics["clip_frac"] <= 1.0 and 0.0 <= metrics["chunk_mask_frac"] <= 1.0
        assert metrics["grad_norm"] > 0
    first, second = per_step
    assert first["ratio_max"] == pytest.approx(1.0, abs=1e-5)  # π_θ = π_old before any step of this batch
    assert abs(second["ratio_max"] - 1.0) > 1e-4 or abs(second["ratio_mean"] - 1.0) > 1e-4  # ρ_c ≠ 1 now

    # run_update (what the driver logs for the RL step) keeps the second step's ratios visible
    attach(update, group.compute_logprobs(update.plan), "old_logp")
    merged = run_update(group, update, algo)
    assert merged["optimizer_steps"] == 2.0
    assert set(IPA_METRICS) <= set(merged)
    assert abs(merged["ratio_max"] - 1.0) > 1e-4


def test_prefix_tokens_get_the_imitation_term_of_eq_10_only_when_asked(trainer, tiny_model_path: Path) -> None:
    """Replayed expert turns (rollout.resampling) are out of the policy-gradient loss; with algorithm.prefix_il_coef
    their tokens get Eq. 10's SFT term, counted over the whole batch, through the real trainer."""
    from transformers import AutoConfig

    group, cfg = trainer
    trajectories = _trajectories(AutoConfig.from_pretrained(tiny_model_path).vocab_size, seed=1)
    for trajectory in trajectories[:4]:
        trajectory.turns[0].replayed = True
    prefix_tokens = sum(len(t.turns[0].completion_ids) for t in trajectories[:4])
    results = {}
    for coef in (0.0, 0.5):
        algo = AlgorithmConfig(name="ipa", prefix_il_coef=coef)
        samples = build_samples(trajectories, error_masking=False).samples
        assert sum(sum(s.prefix_mask or []) for s in samples) == prefix_tokens
        assert not any(m and p for s in samples for m, p in zip(s.loss_mask, s.prefix_mask or []))
        update = prepare(samples, algo, cfg, pad_id=0)
        assert sum(update.prefix_tokens) == prefix_tokens
        results[coef] = run_update(group, update, algo)
    assert "il_loss" not in results[0.0]
    with_il = results[0.5]
    assert with_il["il_num_tokens"] == prefix_tokens and with_il["il_loss"] > 0
