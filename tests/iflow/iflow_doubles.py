"""Test doubles for the policy protocols (named as such: they stand in for a model inside unit tests only; the real
policies are tested against a real `vllm serve` and an in-process vLLM engine)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from iflow.policy.base import Completion, SamplingParams


def tool_call_text(name: str, prefix: str = "", **arguments: Any) -> str:
    return f'{prefix}<tool_call>\n{json.dumps({"name": name, "arguments": arguments})}\n</tool_call>'


class ScriptedMessagePolicyDouble:
    """Answers each chat call with the next scripted text (or with `fallback` when the script runs out)."""

    def __init__(self, script: list[str], fallback: str | None = None) -> None:
        self.script = list(script)
        self.fallback = fallback
        self.prompts: list[list[dict[str, Any]]] = []

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   sampling: SamplingParams) -> Completion:
        self.prompts.append(messages)
        if not self.script and self.fallback is None:
            raise AssertionError("script exhausted")
        return Completion(text=self.script.pop(0) if self.script else self.fallback, finish_reason="stop")


class ScriptedTokenPolicyDouble:
    """Token-level double over a real tokenizer: each scripted text is tokenized and returned as the completion ids
    (with the end-of-turn token unless `end_of_turn=False`), with synthetic log-probs -0.1 * (position + 1)."""

    def __init__(self, tokenizer: Any, script: list[str] | Callable[[list[int]], str],
                 end_of_turn: bool | Callable[[int], bool] = True) -> None:
        self.tokenizer = tokenizer
        self.script = script if callable(script) else list(script)
        self.end_of_turn = end_of_turn
        self.prompts: list[list[int]] = []
        self.policy_version = 7

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        self.prompts.append(list(prompt_ids))
        text = self.script(prompt_ids) if callable(self.script) else self.script.pop(0)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        ends = self.end_of_turn(len(self.prompts) - 1) if callable(self.end_of_turn) else self.end_of_turn
        if ends:
            ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return Completion(text=text, token_ids=ids, logprobs=[-0.1 * (i + 1) for i in range(len(ids))],
                          finish_reason="stop" if ends else "length", policy_version=self.policy_version)
