"""The training configs compose and validate: the CPU default, every algorithm, SFT, the main job and the GPU config
for real models (which cannot run here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.config import ConfigError, load_config
from roll.config.training import ALGORITHM_NAMES, TrainerConfig
from roll.trainer.ds_config import deepspeed_config
from roll.trainer.update import groups_inside_loss, loss_params


def test_train_default_is_ipa_on_cpu() -> None:
    cfg = load_config("train")
    assert cfg.algorithm.name == "ipa" and cfg.trainer.zero_stage in (0, 1, 2, 3)
    assert cfg.trainer.backend == "auto" and cfg.trainer.num_gpus_per_actor == 0
    assert cfg.metrics.wandb == "offline" and cfg.engine.backend == "vllm"


@pytest.mark.parametrize("name", ALGORITHM_NAMES)
def test_every_algorithm_config_is_accepted_by_ipa(name: str) -> None:
    cfg = load_config("train", [f"algorithm={name}"])
    assert cfg.algorithm.name == name
    loss_params(cfg.algorithm)  # raises on a parameter ipa.compute_loss would reject


def test_group_losses_keep_groups_together() -> None:
    cfg = load_config("train", ["algorithm=grpo"])
    assert groups_inside_loss(cfg.algorithm)
    assert not groups_inside_loss(load_config("train").algorithm)


def test_bad_values_fail_with_the_key_path() -> None:
    with pytest.raises(ConfigError, match="trainer.zero_stage"):
        load_config("train", ["trainer.zero_stage=4"])
    with pytest.raises(ConfigError, match="algorithm.name"):
        load_config("train", ["algorithm.name=dpo"])
    with pytest.raises(ConfigError, match="loop.stepz"):
        load_config("train", ["+loop.stepz=3"])
    with pytest.raises(ValueError, match="offload_optimizer"):
        TrainerConfig(zero_stage=0, offload_optimizer=True)


def test_sft_and_main_job_configs() -> None:
    sft = load_config("sft")
    assert sft.sft.error_masking and sft.run.name == "sft"
    main_sft = load_config("main_sft")
    main_rl = load_config("main_rl", ["model=local", f"model.path={_fake_checkpoint(Path('/tmp'))}"])
    assert main_sft.sft.error_masking and main_rl.algorithm.name == "ipa" and main_rl.loop.eval_at_end
    assert main_rl.eval.num_tasks == main_sft.eval.num_tasks


def _fake_checkpoint(root: Path) -> Path:
    path = root / "letitflow-fake-qwen-checkpoint"  # only config.json: enough for config validation
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return path


def test_gpu_config_for_real_models_is_valid(tmp_path: Path) -> None:
    model = _fake_checkpoint(tmp_path)
    cfg = load_config("train_gpu", [f"model.path={model}"])
    assert cfg.model.path == str(model.resolve()) and cfg.model.dtype == "bfloat16"
    assert cfg.trainer.zero_stage == 3 and cfg.trainer.num_gpus_per_actor == 1 and cfg.engine.num_gpus == 1
    assert cfg.trainer.dtype == "bfloat16" and cfg.engine.backend == "vllm"
    ds = deepspeed_config(cfg.trainer, cfg.trainer.world_size)
    assert ds["zero_optimization"]["stage"] == 3 and ds["bf16"] == {"enabled": True}
    assert ds["train_batch_size"] == cfg.trainer.world_size
    gpus = cfg.trainer.world_size * cfg.trainer.num_gpus_per_actor + cfg.engine.num_engines * cfg.engine.num_gpus
    assert gpus == 8  # one 8-GPU node
    with pytest.raises(ConfigError, match="model.path"):
        load_config("train_gpu")  # a real model must be named
