"""A policy that plays a fixed list of tool calls, one per turn, in the exact text form a model would produce.
Token-level when given a tokenizer (golden data for SFT), message-level otherwise. policy_version -1: not a model."""
from __future__ import annotations

from typing import Any

from iflow.parsing import render_call
from iflow.policy.base import Completion, SamplingParams
from iflow.policy.errors import PolicyError
from iflow.trajectory import ToolCall


class ScriptedPolicy:
    def __init__(self, calls: list[ToolCall], tokenizer: Any | None = None) -> None:
        self.calls = list(calls)
        self.position = 0
        if tokenizer is not None:
            self.tokenizer = tokenizer  # presence of `tokenizer` makes the agent treat this as a TokenPolicy

    def _next_text(self) -> str:
        if self.position >= len(self.calls):
            raise PolicyError("the script has no further action")
        call = self.calls[self.position]
        self.position += 1
        return render_call(call)

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        text = self._next_text()
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.tokenizer.eos_token_id]
        return Completion(text=text, token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="stop",
                          policy_version=-1, prompt_tokens=len(prompt_ids))

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   sampling: SamplingParams) -> Completion:
        return Completion(text=self._next_text(), finish_reason="stop", policy_version=-1)
