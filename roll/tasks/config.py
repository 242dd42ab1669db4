"""The `task` config section: where task records come from (the embedded family or a JSON-lines file)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roll.tasks.relay import RelayOptions
from roll.tasks.secret_word import SecretWordOptions
from roll.tasks.shortcut import ShortcutOptions

SPLITS = {"secret_word": ("train", "eval"), "relay": ("train", "dev", "test"),
          "shortcut": ("train", "dev", "test")}
HELD_OUT = {"secret_word": "eval", "relay": "test", "shortcut": "test", "jsonl": "eval"}


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["secret_word", "relay", "shortcut", "jsonl"] = Field(
        "secret_word", description="procedural family or a dataset")
    path: str | None = Field(None, description="JSON-lines task file (source=jsonl)")
    split: Literal["train", "eval", "dev", "test"] = Field(
        "train", description="secret_word: train | eval (held out); relay: train | dev (tuning) | test (reporting)")
    num_tasks: int | None = Field(64, ge=1, description="tasks to generate / read (null = the whole file)")
    seed: int = 0
    shuffle: bool = True
    secret_word: SecretWordOptions = Field(default_factory=SecretWordOptions)
    relay: RelayOptions = Field(default_factory=RelayOptions)
    shortcut: ShortcutOptions = Field(default_factory=ShortcutOptions)

    @property
    def options(self) -> SecretWordOptions | RelayOptions | ShortcutOptions | None:
        """The procedural family's options (None for a dataset)."""
        return {"secret_word": self.secret_word, "relay": self.relay, "shortcut": self.shortcut}.get(self.source)

    @model_validator(mode="after")
    def _path_for_jsonl(self) -> TaskConfig:
        if self.source == "jsonl" and not self.path:
            raise ValueError("source=jsonl needs task.path (a JSON-lines file of task records)")
        allowed = SPLITS.get(self.source)
        if allowed is not None and self.split not in allowed:
            raise ValueError(f"task.split={self.split} does not exist for source={self.source}: one of {allowed}")
        return self
