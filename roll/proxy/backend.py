"""An engine actor as the proxy's token policy. Unlike a plain await on the actor, a cancelled call (the client
went away, the request timed out) cancels the Ray task, so the engine aborts the request instead of finishing it."""
from __future__ import annotations

import asyncio
from typing import Any

from iflow.policy.base import Completion, SamplingParams
from roll.engines.policy import EngineUnavailable, to_completion


class ActorPolicy:
    def __init__(self, actor: Any, tokenizer: Any) -> None:
        self.actor = actor
        self.tokenizer = tokenizer

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        import ray

        ref = self.actor.generate.remote(list(prompt_ids), sampling.model_dump())
        try:
            result = await ref
        except asyncio.CancelledError:
            ray.cancel(ref)
            raise
        except Exception as exc:  # noqa: BLE001 - RayActorError, EngineError raised in the actor, ...
            raise EngineUnavailable(f"engine call failed: {type(exc).__name__}: {exc}") from None
        return to_completion(result)
