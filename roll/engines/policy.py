"""iFlow token policies over the engines: `RayTokenPolicy` (an engine actor handle) and `LocalTokenPolicy` (an
in-process engine). Both implement `iflow.policy.base.TokenPolicy`: exact prompt ids in, completion ids + engine
log-probs + the policy version out."""
from __future__ import annotations

import asyncio
from typing import Any

from iflow.policy.base import Completion, SamplingParams
from iflow.policy.errors import PolicyError

_FIELDS = ("text", "token_ids", "logprobs", "finish_reason", "policy_version")


class EngineUnavailable(PolicyError):
    """The engine failed, timed out or died; the agent ends the episode with outcome "error"."""


def to_completion(result: dict[str, Any]) -> Completion:
    return Completion(**{key: result[key] for key in _FIELDS}, prompt_tokens=result.get("prompt_tokens", 0))


class RayTokenPolicy:
    def __init__(self, actor: Any, tokenizer: Any, timeout: float = 300.0) -> None:
        self.actor = actor
        self.tokenizer = tokenizer
        self.timeout = timeout
        self.calls = 0

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        self.calls += 1
        ref = self.actor.generate.remote(list(prompt_ids), sampling.model_dump())
        try:
            result = await asyncio.wait_for(ref, self.timeout)
        except asyncio.TimeoutError:
            import ray

            ray.cancel(ref)
            raise EngineUnavailable(f"the engine did not answer within {self.timeout:g}s") from None
        except Exception as exc:  # noqa: BLE001 - RayActorError, EngineError raised in the actor, ...
            raise EngineUnavailable(f"engine call failed: {type(exc).__name__}: {exc}") from None
        return to_completion(result)


class LocalTokenPolicy:
    def __init__(self, engine: Any, tokenizer: Any, timeout: float = 300.0) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.timeout = timeout

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        try:
            result = await self.engine.generate(list(prompt_ids), sampling.model_dump(), timeout=self.timeout)
        except asyncio.TimeoutError:
            raise EngineUnavailable(f"the engine did not answer within {self.timeout:g}s") from None
        except Exception as exc:  # noqa: BLE001
            raise EngineUnavailable(f"engine call failed: {type(exc).__name__}: {exc}") from None
        return to_completion(result)
