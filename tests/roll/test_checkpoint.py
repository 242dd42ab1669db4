"""Checkpoints: atomic layout, `latest`, pruning, resume resolution; and a DeepSpeed trainer restored from a
checkpoint continues with exactly the losses, learning rates and RNG of the uninterrupted run."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.trainer.checkpoint import CheckpointManager, load_driver_state, resolve_resume


def _fake_trainer(payload: str):
    """Stands in for the trainer group's save in these layout tests: writes one file."""
    def save(directory: str) -> None:
        (Path(directory) / "weights.txt").write_text(payload)
    return save


def test_save_is_atomic_and_latest_points_to_the_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path / "checkpoints", keep=2)
    first = manager.save(1, _fake_trainer("one"), {"policy_version": 1})
    assert manager.latest() == first and (first / "weights.txt").read_text() == "one"

    def crash(directory: str) -> None:
        (Path(directory) / "weights.txt").write_text("half")
        raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError):
        manager.save(2, crash, {"policy_version": 2})
    assert manager.latest() == first  # the half-written checkpoint is invisible
    assert [p.name for p in manager.complete()] == ["step_000001"]
    manager.save(2, _fake_trainer("two"), {"policy_version": 2})
    manager.save(3, _fake_trainer("three"), {"policy_version": 3})
    assert [p.name for p in manager.complete()] == ["step_000002", "step_000003"]  # keep=2 pruned step 1
    assert not list((tmp_path / "checkpoints").glob(".step_*"))  # the crashed attempt was cleaned up
    state = load_driver_state(manager.latest())
    assert state["step"] == 3 and state["policy_version"] == 3


def test_driver_rng_is_restored(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep=1)
    random.seed(7)
    torch.manual_seed(7)
    path = manager.save(5, _fake_trainer("x"), {})
    expected = (random.random(), torch.rand(3))
    random.seed(0)
    torch.manual_seed(0)
    load_driver_state(path)
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])


def test_resolve_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume("latest", run)
    path = CheckpointManager(run / "checkpoints").save(4, _fake_trainer("x"), {})
    assert resolve_resume("latest", run) == path
    assert resolve_resume(str(run), tmp_path / "elsewhere") == path
    assert resolve_resume(str(path), tmp_path / "elsewhere") == path
    with pytest.raises(FileNotFoundError):
        resolve_resume(str(tmp_path / "nothing"), run)


def test_trainer_resumes_with_identical_losses(ray_local, tiny_model_path: Path, tmp_path: Path) -> None:
    """Train 3 steps saving after the first; a fresh trainer loaded from that checkpoint reproduces steps 2-3
    exactly (model, AdamW moments, LR warm-up position and RNG all restored)."""
    from transformers import AutoConfig

    from roll.trainer.group import TrainerGroup
    from roll.trainer.update import attach, prepare, run_update
    from tests.roll.test_train_trainer import make_samples

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size, n=6, seed=5)
    cfg = TrainerConfig(world_size=1, zero_stage=2, lr=1e-3, warmup_steps=4, lr_schedule="cosine", total_steps=6)
    algo = AlgorithmConfig(name="ipa")
    manager = CheckpointManager(tmp_path / "checkpoints")

    def steps(group, n: int) -> list[tuple[float, float, float]]:
        out = []
        for _ in range(n):
            update = prepare(samples, algo, cfg, pad_id=0)
            attach(update, group.compute_logprobs(update.plan), "old_logp")
            metrics = run_update(group, update, algo)
            noise = float(torch.tensor(group._all("rng_probe")[0]))
            out.append((metrics["loss"], metrics["lr"], noise))
        return out

    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=6)
    try:
        steps(group, 1)
        manager.save(1, group.save_checkpoint, {"policy_version": 1})
        uninterrupted = steps(group, 2)
    finally:
        group.shutdown()
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=6)
    try:
        assert group.load_checkpoint(str(manager.latest())) == 1  # optimizer steps taken before the checkpoint
        resumed = steps(group, 2)
    finally:
        group.shutdown()
    assert resumed == uninterrupted
    assert uninterrupted[0][1] != uninterrupted[1][1]  # the LR schedule moved, and moved the same way
