"""The `task` config section: where task records come from (the embedded family or a JSON-lines file)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roll.tasks.secret_word import SecretWordOptions


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["secret_word", "jsonl"] = Field("secret_word", description="procedural family or a dataset")
    path: str | None = Field(None, description="JSON-lines task file (source=jsonl)")
    split: Literal["train", "eval"] = Field("train", description="held-out instances come from the eval split")
    num_tasks: int | None = Field(64, ge=1, description="tasks to generate / read (null = the whole file)")
    seed: int = 0
    shuffle: bool = True
    secret_word: SecretWordOptions = Field(default_factory=SecretWordOptions)

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> TaskConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source=jsonl needs task.path (a JSON-lines file of task records)")
        return self
