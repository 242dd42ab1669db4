"""A task record: one JSON line of a task dataset.

    {"id": "sw-train-17", "instruction": "...", "image": null, "files": {"notes/memo3.txt": "..."},
     "setup": ["chmod -R a-w notes"], "verifier": {"command": "test ...", "reward": "exit_code", "timeout": 30},
     "limits": {"max_turns": 6}, "metadata": {"split": "train"}}

Files are written and setup commands run in the sandbox before the episode; the verifier runs in the same sandbox
after it (in a fresh shell session) and yields the reward."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Verifier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | None = Field(None, description="shell command run in the sandbox after the episode")
    function: str | None = Field(None, description="'module:function', async (task, sandbox) -> (reward, info)")
    reward: Literal["exit_code", "stdout_float"] = Field(
        "exit_code", description="exit_code: 0 -> 1.0, 1 -> 0.0, anything else see other_exit_codes; "
                                 "stdout_float: the last output line is the reward")
    other_exit_codes: Literal["failure", "verifier_error"] = Field(
        "failure", description="reward=exit_code and the code is not 0 or 1 (a crashed or malformed answer, e.g. "
                               "pytest's 2-5): score 0.0, or count it as a verifier_error (filtered)")
    timeout: float = Field(60.0, gt=0)
    requires_submit: bool = Field(
        False, description="an episode that ends without calling submit (turn, token or time limit) scores 0; "
                           "the verifier's own score stays in reward_info")

    @model_validator(mode="after")
    def _one_kind(self) -> Verifier:
        if (self.command is None) == (self.function is None):
            raise ValueError("a verifier needs exactly one of 'command' or 'function'")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"verifier.function must look like 'package.module:function', got {self.function!r}")
        return self


class Limits(BaseModel):
    """Per-task episode limits; each tightens (never loosens) the agent config's own limit."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1, description="completion tokens over the episode")
    max_seconds: float | None = Field(None, gt=0, description="wall time of the agent loop")


class TaskRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    instruction: str = Field(min_length=1)
    image: str | None = Field(None, description="sandbox image; null = the sandbox config's image")
    files: dict[str, str] = Field(default_factory=dict, description="path (relative to the workdir) -> content")
    setup: list[str] = Field(default_factory=list, description="commands run in order before the episode")
    setup_timeout: float = Field(120.0, gt=0)
    verifier: Verifier
    limits: Limits = Field(default_factory=Limits)
    metadata: dict[str, Any] = Field(default_factory=dict)
