"""Lockstep generation for the synchronous baseline: every turn of a batch of episodes is generated together.

Each episode gets a policy from `LockstepBatcher.policy(i)`. A generate call waits until every episode still running
has asked (or finished), then the whole turn goes to the engine as one batch; so each turn waits for the slowest
environment of the batch, the way classic synchronous multi-turn rollout works."""
from __future__ import annotations

import asyncio
from typing import Any

from iflow.policy.base import Completion, SamplingParams
from roll.engines.policy import EngineUnavailable, to_completion


class LockstepBatcher:
    def __init__(self, actor: Any, size: int, tokenizer: Any, timeout: float = 300.0) -> None:
        self.actor = actor
        self.tokenizer = tokenizer
        self.timeout = timeout
        self.active = set(range(size))
        self.waiting: dict[int, tuple[list[int], SamplingParams, asyncio.Future]] = {}
        self.batches = 0

    def policy(self, index: int) -> LockstepPolicy:
        return LockstepPolicy(self, index)

    def leave(self, index: int) -> None:
        self.active.discard(index)
        self._maybe_fire()

    async def generate(self, index: int, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self.waiting[index] = (list(prompt_ids), sampling, future)
        self._maybe_fire()
        return await future

    def _maybe_fire(self) -> None:
        if not self.waiting or any(i not in self.waiting for i in self.active):
            return
        batch, self.waiting = self.waiting, {}
        self.batches += 1
        asyncio.get_running_loop().create_task(self._fire(batch))

    async def _fire(self, batch: dict[int, tuple[list[int], SamplingParams, asyncio.Future]]) -> None:
        order = sorted(batch)
        sampling = batch[order[0]][1]
        try:
            results = await asyncio.wait_for(
                self.actor.generate_batch.remote([batch[i][0] for i in order], sampling.model_dump()), self.timeout)
        except Exception as exc:  # noqa: BLE001
            for i in order:
                if not batch[i][2].done():
                    batch[i][2].set_exception(EngineUnavailable(f"lockstep batch failed: {exc!r}"))
            return
        for i, result in zip(order, results):
            if not batch[i][2].done():
                batch[i][2].set_result(to_completion(result))


class LockstepPolicy:
    def __init__(self, batcher: LockstepBatcher, index: int) -> None:
        self.batcher = batcher
        self.index = index
        self.tokenizer = batcher.tokenizer

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        return await self.batcher.generate(self.index, prompt_ids, sampling)
