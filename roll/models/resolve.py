"""Where a `model` section's checkpoint lives: its `path`, else the built-in model it names, built or converted once
and cached (the tiny model's tokenizer is trained on generic text, roll/models/generic_corpus.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from roll.models.config import ModelConfig
from roll.models.generic_corpus import generic_corpus
from roll.models.smollm2 import ensure_smollm2
from roll.models.tiny import ensure_tiny_model


def default_tiny_model(path: str | Path | None = None, **overrides: Any) -> Path:
    """The tiny checkpoint (DEFAULT_SPEC + overrides), its tokenizer trained on `generic_corpus`."""
    return ensure_tiny_model(path, corpus=generic_corpus, **overrides)


def resolve_model_path(model: ModelConfig) -> Path:
    """The checkpoint directory of the `model` section: its `path`, else the built-in model it names (converted or
    built once, then cached)."""
    if model.path is not None:
        return Path(model.path)
    if model.builtin == "smollm2":
        return ensure_smollm2()
    return default_tiny_model(**model.tiny)
