"""Limits and sampling of the model proxy. Every request is bounded: time, tokens, body size, concurrency."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from iflow.policy.base import SamplingParams


class ProxyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_name: str = Field("policy", description="the name /v1/models lists and responses carry")
    sampling: SamplingParams = Field(default_factory=SamplingParams,
                                     description="what the engine samples with; the trainer corrects for it")
    honor_client_sampling: bool = Field(False, description="take temperature/top_p/seed from the request (off in "
                                                           "RL: the behaviour policy must be the configured one)")
    max_tokens: int = Field(512, ge=1, description="cap on completion tokens per request (client asks may be lower)")
    max_model_len: int = Field(4096, ge=16, description="prompt + completion tokens the engine can hold")
    request_timeout: float = Field(120.0, gt=0, description="seconds per model call; the engine request is aborted")
    max_body_bytes: int = Field(2_000_000, ge=1024, description="larger request bodies are refused (413)")
    max_concurrent_per_session: int = Field(2, ge=1, description="more requests in flight in one session get 429")
    max_concurrent_total: int = Field(64, ge=1, description="requests in flight over all sessions; beyond: 429")
    max_calls_per_session: int = Field(200, ge=1, description="model calls one episode may make (then 429)")
