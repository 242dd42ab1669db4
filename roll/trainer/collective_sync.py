"""The driver's side of `sync.method: collective`: builds the weight-sync group between trainer rank 0 and the engine
actors once (rank 0 hosts the store, everyone joins at the same time), then runs each push: the same bucket plan to
every side, trainer ranks gathering and broadcasting, engines receiving and loading in place; and finally checks that
every engine serves the pushed version."""
from __future__ import annotations

import time
from typing import Any

import ray

from roll.engines.actor import verify_versions


class CollectiveWeightSync:
    def __init__(self, trainer_actors: list[Any], engine_actors: list[Any], host: str = "127.0.0.1",
                 timeout_s: float = 600.0) -> None:
        if not engine_actors:
            raise ValueError("collective weight sync needs at least one engine")
        self.trainers, self.engines = list(trainer_actors), list(engine_actors)
        self.host, self.timeout_s = host, timeout_s
        self.backend: str | None = None

    def serves(self, engine_actors: list[Any]) -> bool:
        return list(engine_actors) == self.engines

    def _join(self) -> None:
        rank0 = self.trainers[0]
        port, backend = ray.get(rank0.open_weight_sync.remote(self.host, self.timeout_s), timeout=60)
        world_size = 1 + len(self.engines)
        joins = [rank0.join_weight_sync.remote(self.host, port, world_size, self.timeout_s)]
        joins += [engine.join_weight_sync.remote(self.host, port, rank, world_size, backend, self.timeout_s)
                  for rank, engine in enumerate(self.engines, start=1)]
        ray.get(joins, timeout=self.timeout_s + 30)
        self.backend = backend

    def push(self, version: int, bucket_bytes: int) -> dict[str, float]:
        """Broadcast the trainer's weights as policy `version`; gather / push seconds and bytes (of rank 0)."""
        started = time.perf_counter()
        try:
            if self.backend is None:
                self._join()
            join_s = time.perf_counter() - started
            plan = ray.get(self.trainers[0].weight_plan.remote(bucket_bytes), timeout=60)
            receivers = [engine.receive_weights.remote(plan, version) for engine in self.engines]
            senders = [trainer.broadcast_weights.remote(plan) for trainer in self.trainers]
            answers = ray.get(senders, timeout=self.timeout_s + 30)
            ray.get(receivers, timeout=self.timeout_s + 30)
        except Exception:
            self.backend = None  # a failed broadcast leaves the group unusable: the next push builds a new one
            raise
        verify_versions(self.engines, version)
        return {"gather_s": max(a["gather_s"] for a in answers), "push_s": answers[0]["push_s"],
                "bytes": answers[0]["bytes"], "join_s": join_s}
