"""The training configs compose and validate: the CPU default, every algorithm, SFT, the main job and the GPU config
for real models (which cannot run here)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.config import ConfigError, load_config
from roll.config.placement import Slot, place
from roll.config.training import ALGORITHM_NAMES, TrainerConfig
from roll.engines.vllm_engine import engine_arguments
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
    main_sft = load_config("tiny_sft")
    main_rl = load_config("tiny_rl", ["model=local", f"model.path={_fake_checkpoint(Path('/tmp'))}"])
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
    with pytest.raises(ConfigError, match="model.path"):
        load_config("train_gpu")  # a real model must be named


def test_gpu_config_places_every_role_on_its_own_declared_gpu(tmp_path: Path) -> None:
    cfg = load_config("train_gpu", [f"model.path={_fake_checkpoint(tmp_path)}"])
    slots = place(cfg)
    assert sorted(slots) == sorted([f"engine {i}" for i in range(4)] + [f"trainer rank {r}" for r in range(4)])
    used = [(s.node, g) for s in slots.values() for g in s.gpus]
    assert len(used) == len(set(used)) == cfg.ray.num_gpus == 8  # every GPU once, nothing shared


def test_a_kl_reference_that_needs_a_ninth_gpu_fails_at_load_naming_it(tmp_path: Path) -> None:
    model = f"model.path={_fake_checkpoint(tmp_path)}"
    with pytest.raises(ConfigError) as caught:
        load_config("train_gpu", [model, "algorithm.kl_coef=0.05"])
    message = str(caught.value)
    assert "\n" not in message and "reference" in message and "9 GPUs" in message and "declares 8" in message
    fitted = place(load_config("train_gpu", [model, "algorithm.kl_coef=0.05", "engine.num_engines=3"]))
    assert "reference (algorithm.kl_coef > 0)" in fitted and len(fitted) == 8


def test_gpu_demands_need_declared_gpus() -> None:
    with pytest.raises(ConfigError, match="ray.num_gpus is not set"):
        load_config("train", ["trainer.num_gpus_per_actor=1"])
    assert place(load_config("train")) == {}  # the CPU default asks for no GPU


def test_fractional_engines_share_a_gpu_and_nodes_bound_whole_gpu_demands() -> None:
    shared = place(load_config("train", ["ray.num_gpus=1", "engine.num_engines=2", "engine.num_gpus=0.5"]))
    assert shared["engine 0"] == shared["engine 1"] == Slot(0, (0,))
    tp4 = ["engine.tensor_parallel_size=4", "engine.num_gpus=4", "engine.num_engines=2"]
    two_nodes = place(load_config("train", ["ray.num_gpus=8", "ray.gpus_per_node=4", *tp4]))
    assert {s.node for s in two_nodes.values()} == {0, 1} and all(len(s.gpus) == 4 for s in two_nodes.values())
    with pytest.raises(ConfigError, match="engine 0 .*does not fit"):  # 4 GPUs per node: a TP-8 engine cannot fit
        load_config("train", ["ray.num_gpus=8", "ray.gpus_per_node=4", "engine.tensor_parallel_size=8",
                              "engine.num_gpus=8"])


def test_tensor_parallel_size_is_validated_and_passed_to_vllm(tmp_path: Path) -> None:
    from vllm import EngineArgs

    model = f"model.path={_fake_checkpoint(tmp_path)}"
    with pytest.raises(ConfigError, match="engine.num_gpus=2"):
        load_config("train_gpu", [model, "engine.tensor_parallel_size=2"])  # 2-way TP on a 1-GPU engine
    with pytest.raises(ConfigError, match="tensor_parallel_size > 1 needs the vllm backend"):
        load_config("train_gpu", [model, "engine=hf", "engine.tensor_parallel_size=2", "engine.num_gpus=2"])
    cfg = load_config("train_gpu", [model, "engine.tensor_parallel_size=2", "engine.num_gpus=2",
                                    "engine.num_engines=2"])
    assert [len(place(cfg)[f"engine {i}"].gpus) for i in range(2)] == [2, 2]
    arguments = engine_arguments(cfg.model.path, cfg.engine, cfg.model.dtype)
    assert arguments["tensor_parallel_size"] == 2 and arguments["distributed_executor_backend"] == "mp"
    args = EngineArgs(**arguments)
    assert args.tensor_parallel_size == 2
    assert EngineArgs(**engine_arguments(cfg.model.path, load_config("train").engine, "float32")) \
        .tensor_parallel_size == 1
