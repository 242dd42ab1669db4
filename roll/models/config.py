"""The `model` config section: which checkpoint every engine and trainer loads."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from roll.models.tiny import tiny_spec


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="a local Hugging Face checkpoint directory; null = the built-in "
                                               "model named by `builtin`")
    builtin: Literal["tiny", "smollm2"] = Field(
        "tiny", description="with path null: tiny (built from a config, roll/models/resolve.py; for fast tests) or "
                            "smollm2 (SmolLM2-135M-Instruct from its wheel, roll/models/smollm2.py)")
    tiny: dict[str, int | float] = Field(default_factory=dict, description="overrides of the tiny-model spec")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not (path / "config.json").is_file():
            raise ValueError(f"not a Hugging Face checkpoint directory (no config.json): {value}")
        return str(path.resolve())

    @field_validator("tiny")
    @classmethod
    def _known(cls, value: dict[str, Any]) -> dict[str, Any]:
        tiny_spec(**value)  # raises ValueError naming unknown options
        return value
