"""Start an episode from a recorded prefix: the first `turns` turns of a recorded trajectory are replayed (their
completions given back as they were, so the agent re-runs their tool calls in a fresh workspace), then the live
policy takes over. `check` compares each replayed turn's new observation with the recorded one: a prefix whose
observations differ did not reproduce the recorded state and must be refused (the caller stops the episode)."""
from __future__ import annotations

from typing import Any

from iflow.policy.base import Completion, SamplingParams
from iflow.trajectory import Trajectory, Turn


class PrefixPolicy:
    """Token-level: wraps a TokenPolicy whose tokenizer is the one the recorded trajectory was rendered with."""

    def __init__(self, recorded: Trajectory, turns: int, policy: Any) -> None:
        if not 0 < turns <= len(recorded.turns):
            raise ValueError(f"prefix of {turns} turns asked of trajectory {recorded.id} with "
                             f"{len(recorded.turns)} turns")
        self.recorded = recorded
        self.turns = turns
        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.position = 0

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        if self.position >= self.turns:
            return await self.policy.generate(prompt_ids, sampling)
        turn = self.recorded.turns[self.position]
        self.position += 1
        ids = list(turn.completion_ids)
        logprobs = list(turn.logprobs) if len(turn.logprobs) == len(ids) else [0.0] * len(ids)
        return Completion(text=turn.completion_text, token_ids=ids, logprobs=logprobs,
                          finish_reason=turn.finish_reason, replayed=True)

    def check(self, turn: Turn) -> str | None:
        """None while the replay reproduces the recording; else why the prefix must be refused."""
        if turn.index >= self.turns:
            return None
        recorded = self.recorded.turns[turn.index]
        if turn.observation != recorded.observation:
            return (f"prefix refused: turn {turn.index}'s observation differs from the recording "
                    f"({len(turn.observation)} vs {len(recorded.observation)} characters)")
        if turn.tool_error != recorded.tool_error or turn.parse_error != recorded.parse_error:
            return f"prefix refused: turn {turn.index}'s tool call did not behave as recorded"
        return None
