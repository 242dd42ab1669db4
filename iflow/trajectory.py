"""The trajectory record: one JSON line per episode, one `Turn` per assistant turn (= one interaction chunk).

Everything that happens because of a turn attaches to that turn: the sandbox commands it ran (`commands`), the
security events they caused (`events`), a per-step reward (`reward`). Training reads token ids and engine log-probs
straight from here; the chunk boundaries `ipa/` needs are the turns themselves.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel, Field
from pydantic_core import PydanticSerializationError


class ToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Turn(BaseModel):
    index: int
    # A user message that arrived before this turn (interactive follow-ups; the first turn's is the task itself).
    user_input: str | None = None
    # What the model saw. Token policies: the exact prompt ids. HTTP policies: the messages.
    prompt_ids: list[int] | None = None
    prompt_messages: list[dict[str, Any]] | None = None
    # True when this turn's prompt does not extend the previous turn's prompt + completion (context rewritten).
    fork: bool = False
    completion_text: str = ""
    completion_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list, description="engine log-probs of completion_ids")
    policy_version: int | None = None
    finish_reason: str | None = None
    tool_call: ToolCall | None = None
    parse_error: str | None = None
    observation: str = ""
    tool_error: bool = False
    timings: dict[str, float] = Field(default_factory=dict)
    commands: list[dict[str, Any]] = Field(default_factory=list, description="rock CommandRecords of this turn")
    events: list[dict[str, Any]] = Field(default_factory=list, description="security events caused by this turn")
    reward: float | None = Field(None, description="per-step reward r_k, if any")
    train_mask: int = Field(1, description="0 masks this turn out of SFT (error masking, Eq. 1-2)")


class Trajectory(BaseModel):
    id: str
    task_id: str = ""
    group_id: str | None = None
    system_prompt: str = ""
    task: str = ""
    turns: list[Turn] = Field(default_factory=list)
    submission: str | None = None
    reward: float | None = None
    reward_info: dict[str, Any] = Field(default_factory=dict, description="verifier / test results")
    events: list[dict[str, Any]] = Field(default_factory=list, description="episode-level events")
    outcome: str = "running"  # submitted | max_turns | max_tokens | timeout | error | terminated
    error: str | None = None
    parse_errors: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)

    def all_events(self) -> list[dict[str, Any]]:
        return [*self.events, *(e for turn in self.turns for e in turn.events)]

    def to_jsonl(self) -> str:
        """One JSON line. Text that is not valid Unicode (a lone surrogate from a model's `"\\ud800"` escape) is
        written as JSON escapes, which load back to the same string."""
        try:
            return self.model_dump_json()
        except PydanticSerializationError:
            return json.dumps(self.model_dump(mode="json"), ensure_ascii=True)


class TrainingSequence(BaseModel):
    """One token sequence for the trainer: the last prompt of a fork-free run of turns plus its completion.

    assistant tokens carry `turn_ids` (the chunk index) and engine log-probs; others carry -1 / 0.0."""

    input_ids: list[int]
    turn_ids: list[int]
    engine_logprobs: list[float]
    train_mask: list[int]


def training_sequences(trajectory: Trajectory) -> list[TrainingSequence]:
    """Split a token-level trajectory into sequences at forks. Within a segment every prompt extends the previous
    prompt + completion exactly (checked), so the last turn's prompt + completion holds every turn of the segment."""
    segments: list[list[Turn]] = []
    for turn in trajectory.turns:
        if turn.prompt_ids is None:
            raise ValueError(f"turn {turn.index} has no prompt_ids: not a token-level trajectory")
        if not turn.completion_ids:
            continue
        if segments and not turn.fork:
            prev = segments[-1][-1]
            head = prev.prompt_ids + prev.completion_ids
            if turn.prompt_ids[: len(head)] == head:
                segments[-1].append(turn)
                continue
        segments.append([turn])
    sequences = []
    for segment in segments:
        last = segment[-1]
        ids = list(last.prompt_ids) + list(last.completion_ids)
        turn_ids = [-1] * len(ids)
        logprobs = [0.0] * len(ids)
        mask = [0] * len(ids)
        for turn in segment:
            start = len(turn.prompt_ids)
            for offset, lp in enumerate(turn.logprobs or [0.0] * len(turn.completion_ids)):
                turn_ids[start + offset] = turn.index
                logprobs[start + offset] = lp
                mask[start + offset] = turn.train_mask
        sequences.append(TrainingSequence(input_ids=ids, turn_ids=turn_ids, engine_logprobs=logprobs, train_mask=mask))
    return sequences


def save_jsonl(trajectories: Iterable[Trajectory], path: str | Path, append: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as handle:
        for trajectory in trajectories:
            handle.write(trajectory.to_jsonl() + "\n")
            handle.flush()


def load_jsonl(path: str | Path) -> Iterator[Trajectory]:
    with Path(path).open() as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield Trajectory.model_validate(json.loads(line))
                except Exception as exc:  # noqa: BLE001 - re-raised with the location
                    raise ValueError(f"{path}:{number}: not a trajectory record: {exc}") from exc
