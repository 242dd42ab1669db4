"""Weight sync: after an update, the trainer's weights go to the vLLM engines in memory (through the object store or a
collective broadcast), version-checked, and the engine's log-probs of the same tokens equal the trainer's (float32)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.engines.config import EngineConfig, WeightSyncConfig
from roll.trainer.update import attach, prepare, run_update
from tests.roll.test_train_trainer import make_samples


@pytest.mark.parametrize("world_size,stage,method", [
    pytest.param(1, 2, "object_store", id="ws1-zero2-object_store"),
    pytest.param(1, 2, "collective", id="ws1-zero2-collective"),
    pytest.param(2, 3, "collective", id="ws2-zero3-collective", marks=pytest.mark.slow),
    pytest.param(2, 3, "object_store", id="ws2-zero3-object_store", marks=pytest.mark.slow)])
def test_engine_logprobs_equal_trainer_logprobs_after_sync(ray_local, tiny_model_path: Path, world_size: int,
                                                           stage: int, method: str) -> None:
    from transformers import AutoConfig

    from roll.engines.actor import EngineGroup
    from roll.trainer.group import TrainerGroup

    samples = make_samples(AutoConfig.from_pretrained(tiny_model_path).vocab_size, n=4, seed=3)
    cfg = TrainerConfig(world_size=world_size, zero_stage=stage, lr=5e-3)
    engines = EngineGroup.create(tiny_model_path, EngineConfig(backend="vllm", num_cpus=0.01, max_model_len=256))
    group = TrainerGroup(str(tiny_model_path), cfg, total_steps=1)
    try:
        import ray

        algo = AlgorithmConfig(name="ipa")
        update = prepare(samples, algo, cfg, pad_id=0)
        attach(update, group.compute_logprobs(update.plan), "old_logp")
        run_update(group, update, algo)
        sequences = [s.input_ids for s in samples]
        stale = ray.get(engines.actors[0].compute_logprobs.remote(sequences))
        trained = group.sequence_logprobs(sequences)
        assert max(abs(a - b) for s, t in zip(stale, trained) for a, b in zip(s, t)) > 1e-3  # weights did move

        sync = WeightSyncConfig(method=method, bucket_bytes=1 << 20)  # ~5 buckets of 1 MiB
        timing = group.push_weights(engines.actors, version=1, sync=sync)
        assert engines.policy_version() == 1
        assert timing["sync_s"] > 0 and timing["sync_bytes"] > 0
        synced = ray.get(engines.actors[0].compute_logprobs.remote(sequences))
        for engine_lp, trainer_lp in zip(synced, trained):
            torch.testing.assert_close(torch.tensor(engine_lp), torch.tensor(trainer_lp), rtol=0, atol=1e-5)

        with pytest.raises(Exception, match="already serves version 1"):  # the engine refuses, the push fails
            group.push_weights(engines.actors, version=1, sync=sync)
        assert engines.policy_version() == 1
        group.push_weights(engines.actors, version=2, sync=sync)  # the same group, once more
        assert engines.policy_version() == 2
    finally:
        group.shutdown()
        engines.shutdown()
