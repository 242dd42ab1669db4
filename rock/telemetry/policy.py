"""What to do about events inside RL: record, penalize the reward, terminate the episode, drop the trajectory from
the batch, quarantine the sandbox. Configured per category in YAML (rock/rules/policy.yaml is the default)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rock.telemetry.events import CATEGORIES

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "rules" / "policy.yaml"


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    penalty: float = Field(0.0, ge=0)
    terminate: bool = False
    drop: bool = False
    quarantine: bool = False


class SafetyPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: dict[str, Action] = Field(default_factory=dict)
    max_penalty: float = Field(1.0, ge=0)

    @field_validator("categories")
    @classmethod
    def _known(cls, value: dict[str, Action]) -> dict[str, Action]:
        unknown = set(value) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
        return value

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> "SafetyPolicy":
        data = yaml.safe_load(Path(path or DEFAULT_POLICY).read_text()) or {}
        for category, action in (overrides or {}).items():
            data.setdefault("categories", {}).setdefault(category, {}).update(action)
        return cls.model_validate(data)

    def action(self, category: str) -> Action:
        return self.categories.get(category, Action())

    def verdict(self, events: Iterable[dict[str, Any] | Any]) -> "Verdict":
        verdict = Verdict()
        for event in events:
            category = event["category"] if isinstance(event, dict) else event.category
            action = self.action(category)
            verdict.counts[category] = verdict.counts.get(category, 0) + 1
            verdict.penalty = min(self.max_penalty, verdict.penalty + action.penalty)
            verdict.terminate |= action.terminate
            verdict.drop |= action.drop
            verdict.quarantine |= action.quarantine
            if action.terminate or action.drop or action.quarantine:
                verdict.reasons.append(category)
        return verdict


class Verdict(BaseModel):
    penalty: float = 0.0
    terminate: bool = False
    drop: bool = False
    quarantine: bool = False
    counts: dict[str, int] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
