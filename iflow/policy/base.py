"""The policy protocol: given the prompt the context manager built, return a completion.

Two forms: message-level (HTTP chat completions) and token-level (exact prompt ids in, completion ids + engine
log-probs out) for training. Both are async: a rollout runs many episodes concurrently."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class SamplingParams(BaseModel):
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 512
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


class Completion(BaseModel):
    text: str
    token_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    finish_reason: str | None = None
    policy_version: int | None = None
    tool_calls: list[dict[str, Any]] | None = None  # native OpenAI tool_calls, when the server returned them
    prompt_tokens: int = 0
    replayed: bool = False  # taken from a recorded trajectory (iflow.policy.prefix), not generated


@runtime_checkable
class MessagePolicy(Protocol):
    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   sampling: SamplingParams) -> Completion: ...


@runtime_checkable
class TokenPolicy(Protocol):
    """Token in, token out. `tokenizer` is a Hugging Face tokenizer with a chat template."""

    tokenizer: Any

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion: ...
