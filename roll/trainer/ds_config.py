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
