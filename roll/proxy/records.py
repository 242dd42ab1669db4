"""What the proxy records for every request: the exact tokens served, and how the prompt came to be."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from iflow.trajectory import ToolCall

CallStatus = Literal["ok", "aborted", "timeout", "rejected", "error"]
# spliced: previous prompt + the model's own completion ids + the new messages' tokens (an exact extension);
# rendered: the whole conversation rendered by the chat template; raw: a /v1/completions prompt.
PromptSource = Literal["spliced", "rendered", "raw"]


class ProxyCall(BaseModel):
    id: str
    seq: int = Field(0, description="order in which the proxy received the requests")
    session: str
    endpoint: str
    status: CallStatus = "ok"
    error: str | None = None
    error_code: str | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    prompt_source: PromptSource = "rendered"
    prompt_ids: list[int] = Field(default_factory=list)
    completion_ids: list[int] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    completion_text: str = ""
    policy_version: int | None = None
    finish_reason: str | None = None
    tool_call: ToolCall | None = None
    parse_error: str | None = None
    response_message: dict[str, Any] | None = Field(None, description="the assistant message returned to the client")
    stream: bool = False
    timings: dict[str, float] = Field(default_factory=dict)

    def audit_line(self) -> dict[str, Any]:
        """The short form kept on the episode's audit record."""
        return {"id": self.id, "endpoint": self.endpoint, "status": self.status, "error": self.error,
                "prompt_tokens": len(self.prompt_ids), "completion_tokens": len(self.completion_ids),
                "policy_version": self.policy_version, "finish_reason": self.finish_reason,
                "tool": self.tool_call.name if self.tool_call else None, "prompt_source": self.prompt_source,
                "timings": dict(self.timings)}
