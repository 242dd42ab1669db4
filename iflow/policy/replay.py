"""Replay a recorded trajectory: the policy answers each turn with the completion that was recorded for it, and
notes every turn whose prompt differs from the recorded prompt. Running an Agent with it in a fresh copy of the
workspace re-enacts the episode (and checks that the context is rebuilt exactly)."""
from __future__ import annotations

import json
from typing import Any

from iflow.policy.base import Completion, SamplingParams
from iflow.policy.errors import PolicyError
from iflow.trajectory import Trajectory, Turn


class ReplayPolicy:
    """Token-level when given the tokenizer the trajectory was recorded with, message-level otherwise."""

    def __init__(self, trajectory: Trajectory, tokenizer: Any | None = None) -> None:
        self.trajectory = trajectory
        self.tokenizer = tokenizer
        self.position = 0
        self.mismatches: list[int] = []  # indices of turns whose prompt differed from the recording

    def _next(self) -> Turn:
        if self.position >= len(self.trajectory.turns):
            raise PolicyError(f"replay exhausted: trajectory {self.trajectory.id} has "
                              f"{len(self.trajectory.turns)} turns")
        turn = self.trajectory.turns[self.position]
        self.position += 1
        return turn

    @staticmethod
    def _completion(turn: Turn) -> Completion:
        calls = None
        if turn.tool_call is not None and turn.tool_call.id is not None:
            calls = [{"id": turn.tool_call.id, "type": "function", "function": {
                "name": turn.tool_call.name, "arguments": json.dumps(turn.tool_call.arguments)}}]
        return Completion(text=turn.completion_text, token_ids=turn.completion_ids, logprobs=turn.logprobs,
                          finish_reason=turn.finish_reason, policy_version=turn.policy_version, tool_calls=calls)

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        turn = self._next()
        if turn.prompt_ids != list(prompt_ids):
            self.mismatches.append(turn.index)
        return self._completion(turn)

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   sampling: SamplingParams) -> Completion:
        turn = self._next()
        if turn.prompt_messages != messages:
            self.mismatches.append(turn.index)
        return self._completion(turn)
