"""Env workers: Ray actors that run many episodes concurrently with asyncio, each an iFlow agent in its own ROCK
sandbox taken from the worker's pool, talking to an engine actor through `RayTokenPolicy`.

    worker = create_env_worker(index, model_path, cfg, engines.actors)
    result = await worker.run_episode.remote(spec)      # spec: {"task", "trajectory_id", "group_id", "engine", "metadata"}
    results = await worker.run_lockstep.remote(specs)   # the synchronous baseline: turns generated in lockstep
Results are `EpisodeResult.to_dict()` dicts."""
from __future__ import annotations

import asyncio
import os
from typing import Any

from roll.tasks.schema import TaskRecord


class EnvWorker:
    def __init__(self, index: int, model_path: str, sandbox: dict[str, Any], agent: dict[str, Any],
                 rollout: dict[str, Any], engines: list[Any], request_timeout: float = 300.0) -> None:
        from transformers import AutoTokenizer

        from iflow.config import AgentConfig
        from rock import SandboxConfig
        from roll.rollout.config import RolloutConfig
        from roll.rollout.episode import EpisodeRunner

        self.index = index
        self.sandbox = SandboxConfig.model_validate(sandbox)
        self.rollout = RolloutConfig.model_validate(rollout)
        blackbox = agent.get("kind") == "blackbox"  # agent=blackbox: a command in the sandbox, the model via a proxy
        self.agent = AgentConfig.model_validate(agent) if not blackbox else None
        self.engines = engines
        self.request_timeout = request_timeout
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.proxy = None
        if blackbox:
            from roll.proxy.config import BlackBoxAgentConfig
            from roll.rollout.blackbox import BlackBoxEpisodeRunner, start_worker_proxy

            self.agent = BlackBoxAgentConfig.model_validate(agent)
            self.proxy, self.sandbox = start_worker_proxy(self.sandbox, self.tokenizer, self.agent)
        self.pools: dict[str, Any] = {}
        self._pool(self.sandbox.image)
        self.runner_args = dict(agent=self.agent, acquire_timeout=self.rollout.sandbox_acquire_timeout,
                                hang_grace=self.rollout.hang_grace, episode_timeout=self.rollout.episode_timeout,
                                safety=self.rollout.safety)
        self._runner = EpisodeRunner
        if self.proxy is not None:
            self.runner_args["proxy"] = self.proxy
            self._runner = BlackBoxEpisodeRunner
        self.running = 0
        self.finished = 0

    def _pool(self, image: str | None) -> Any:
        from rock import SandboxPool

        image = image or self.sandbox.image
        if image not in self.pools:
            config = self.sandbox.model_copy(update={"image": image,
                                                     "labels": {**self.sandbox.labels, "roll.worker": str(self.index),
                                                                "roll.pid": str(os.getpid())}})
            self.pools[image] = SandboxPool(config, size=self.rollout.pool_size)
        return self.pools[image]

    def ready(self, timeout: float = 120.0) -> int:
        pool = self._pool(None)
        pool.wait_ready(min(pool.size, 1), timeout=timeout)
        return pool.ready

    def ping(self) -> int:
        return self.running

    def _runner_for(self, task: TaskRecord) -> Any:
        return self._runner(self._pool(task.image), **self.runner_args)

    async def run_episode(self, spec: dict[str, Any]) -> dict[str, Any]:
        from roll.engines.policy import RayTokenPolicy

        task = TaskRecord.model_validate(spec["task"])
        engine = self.engines[int(spec.get("engine", 0)) % len(self.engines)]
        policy = RayTokenPolicy(engine, self.tokenizer, timeout=self.request_timeout)
        self.running += 1
        try:
            result = await self._runner_for(task).run(task, policy, trajectory_id=spec["trajectory_id"],
                                                      group_id=spec.get("group_id"), metadata=spec.get("metadata"),
                                                      **prefix_of(spec))
        finally:
            self.running -= 1
            self.finished += 1
        return result.to_dict()

    async def run_lockstep(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from roll.rollout.lockstep import LockstepBatcher

        batcher = LockstepBatcher(self.engines[0], len(specs), self.tokenizer, timeout=self.request_timeout)
        tasks = [TaskRecord.model_validate(spec["task"]) for spec in specs]
        self.running += len(specs)
        try:
            results = await asyncio.gather(*(
                self._runner_for(task).run(task, batcher.policy(i), trajectory_id=spec["trajectory_id"],
                                           group_id=spec.get("group_id"), metadata=spec.get("metadata"),
                                           on_agent_done=lambda i=i: batcher.leave(i), **prefix_of(spec))
                for i, (task, spec) in enumerate(zip(tasks, specs))))
        finally:
            self.running -= len(specs)
            self.finished += len(specs)
        return [result.to_dict() for result in results]

    def close(self) -> None:
        """Stop this worker's sandboxes, then sweep this host for those of workers that died before (their owner
        is gone: nobody else would remove them once the run shuts down)."""
        from rock.reaper import reap

        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        if self.proxy is not None:
            self.proxy.stop()
        reap()


def prefix_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The runner's `prefix` keyword for a spec that resamples from an expert prefix (none otherwise)."""
    if not spec.get("prefix"):
        return {}
    from iflow.trajectory import Trajectory

    return {"prefix": (Trajectory.model_validate(spec["prefix"]["trajectory"]), int(spec["prefix"]["turns"]))}


def create_env_worker(index: int, model_path: str, sandbox: Any, agent: Any, rollout: Any, engines: list[Any],
                      request_timeout: float = 300.0) -> Any:
    import ray

    remote = ray.remote(EnvWorker)
    return remote.options(num_cpus=rollout.env_num_cpus, max_concurrency=1000).remote(
        index, str(model_path), sandbox.model_dump(), agent.model_dump(), rollout.model_dump(), engines,
        request_timeout)
