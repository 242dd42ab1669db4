"""The DeepSpeed config dict of a trainer actor, built from `TrainerConfig`.

Gradient accumulation is driven by the trainer itself (variable micro-batch counts, loss scaled by a global
denominator), so DeepSpeed sees one sample per micro-batch and one accumulation step; the trainer marks the boundary."""
from __future__ import annotations

from typing import Any

from roll.config.training import TrainerConfig


def deepspeed_config(cfg: TrainerConfig, world_size: int) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": cfg.zero_stage}
    if cfg.zero_stage >= 1:
        # On CPU/gloo overlap_comm buys nothing and contiguous buffers only cost memory.
        zero.update({"overlap_comm": False, "contiguous_gradients": cfg.zero_stage >= 2})
    if cfg.zero_stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": False, "stage3_param_persistence_threshold": 0})
    if cfg.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "gradient_clipping": cfg.max_grad_norm,
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if cfg.dtype == "bfloat16":
        config["bf16"] = {"enabled": True}
    elif cfg.dtype == "float16":
        config["fp16"] = {"enabled": True, "initial_scale_power": 16}
    return config


def runtime_problem(cfg: TrainerConfig, *, cuda_available: bool, accelerate_installed: bool,
                    ds_accelerator: str | None, torch_version: str = "") -> str | None:
    """Why this trainer config cannot run as asked on this machine (one line naming the fix), or None.

    Both cases used to degrade silently: a GPU config on a CPU build of torch trained on the CPU, and ZeRO-3 without
    `accelerate` loaded the whole model on every rank before partitioning it."""
    wants_gpu = cfg.num_gpus_per_actor > 0 or cfg.backend == "nccl"
    asked = f"trainer.num_gpus_per_actor={cfg.num_gpus_per_actor:g}, trainer.backend={cfg.backend}"
    if wants_gpu and not cuda_available:
        return (f"the trainer config asks for GPUs ({asked}) but torch {torch_version} has no CUDA: install a CUDA "
                "build of torch, or use the CPU trainer config (trainer=cpu: num_gpus_per_actor=0, backend=auto)")
    if wants_gpu and ds_accelerator not in (None, "", "cuda"):
        return (f"DS_ACCELERATOR={ds_accelerator} but the trainer config asks for GPUs ({asked}): unset "
                "DS_ACCELERATOR (scripts/env.sh sets it to cpu only where libcuda is missing) or set it to cuda")
    if ds_accelerator == "cuda" and not cuda_available:
        return f"DS_ACCELERATOR=cuda but torch {torch_version} has no CUDA: unset DS_ACCELERATOR or set it to cpu"
    if cfg.zero_stage == 3 and not accelerate_installed:
        return ("trainer.zero_stage=3 needs the `accelerate` package to partition the weights while loading (without "
                "it every rank loads the whole model): pip install accelerate")
    return None
