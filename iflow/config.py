"""Agent configuration: episode limits, context budget, tools, prompt. The same object drives training and use."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iflow.policy.base import SamplingParams
from iflow.tools.registry import DEFAULT_TOOL_NAMES

ApprovalMode = Literal["default", "auto-edit", "yolo", "plan"]


class ContextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_context_tokens: int = Field(8192, ge=256, description="hard budget for the prompt, in tokens")
    max_observation_tokens: int = Field(1024, ge=32, description="longer observations are cut to head + tail")
    compress_threshold: float = Field(0.8, gt=0, le=1, description="compress once the prompt passes this fraction")
    compress_target: float = Field(0.5, gt=0, le=1, description="...and compress down to this fraction")
    keep_recent_turns: int = Field(3, ge=0, description="observations of the newest turns are kept whole if possible")

    @model_validator(mode="after")
    def _ordered(self) -> ContextConfig:
        if self.compress_target > self.compress_threshold:
            raise ValueError(f"compress_target ({self.compress_target}) must not exceed compress_threshold "
                             f"({self.compress_threshold})")
        return self


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(30, ge=1)
    max_total_tokens: int | None = Field(None, ge=1, description="limit on completion tokens over the episode")
    max_wall_seconds: float = Field(1800.0, gt=0)
    command_timeout: float = Field(60.0, gt=0, description="seconds per tool command")
    policy_timeout: float = Field(600.0, gt=0, description="seconds per model call")
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    context: ContextConfig = Field(default_factory=ContextConfig)
    tools: list[str] = Field(default_factory=lambda: list(DEFAULT_TOOL_NAMES))
    system_prompt_template: str | None = Field(None, description="fields {tools} {workdir} {project_context}")
    project_file: str | None = Field("IFLOW.md", description="read into the system prompt when present")
    approval_mode: ApprovalMode = "yolo"
    text_answer_ends_episode: bool = Field(False, description="a reply without a tool call ends the episode "
                                                              "(interactive use) instead of being an error")
    template_renders_tools: bool = Field(False, description="pass tool schemas to the chat template "
                                                            "(tools=...) instead of listing them in the prompt")
