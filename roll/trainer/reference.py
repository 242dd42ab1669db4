"""The optional reference policy for a KL penalty: the starting checkpoint, frozen, in its own Ray actor.

Inference only (no optimizer, no DeepSpeed): it answers `compute_logprobs(plan)` with the same layout as
`TrainerGroup.compute_logprobs`, so the driver fills `ref_logp` exactly as it fills `old_logp`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from roll.ray_wait import get
from roll.trainer.batch import MicroBatch


class ReferenceActor:
    def __init__(self, model_path: str, dtype: str = "float32", torch_threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(self.device)
        self.model.eval()
        self.model.requires_grad_(False)

    def compute_logprobs(self, micro_batches: list[MicroBatch]) -> list[Any]:
        from roll.trainer.logprobs import micro_batch_logprobs

        return micro_batch_logprobs(self.model, micro_batches, self.device)


class ReferenceModel:
    """One reference actor serving the whole plan (all ranks' micro-batches)."""

    def __init__(self, model_path: str, dtype: str = "float32", num_cpus: float = 0.01, num_gpus: float = 0.0,
                 torch_threads: int | None = None, call_timeout: float = 3600.0):
        self.call_timeout = call_timeout
        self.actor = ray.remote(ReferenceActor).options(num_cpus=num_cpus, num_gpus=num_gpus).remote(
            str(model_path), dtype, torch_threads)

    def compute_logprobs(self, plan: Sequence[Sequence[Sequence[MicroBatch]]]) -> list[list[list[Any]]]:
        flat = [mb for mini in plan for rank in mini for mb in rank]
        answers = iter(get(self.actor.compute_logprobs.remote(flat), self.call_timeout, "reference: compute_logprobs"))
        return [[[next(answers) for _ in rank] for rank in mini] for mini in plan]

    def shutdown(self) -> None:
        ray.kill(self.actor)
