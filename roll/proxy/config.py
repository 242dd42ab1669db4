"""Limits and sampling of the model proxy. Every request is bounded: time, tokens, body size, concurrency."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from iflow.config import AgentConfig
from iflow.policy.base import SamplingParams
from rock.agent_image import AGENT_IMAGE

SHIM_PORT = 8399
AGENT_CONFIG_IN_SANDBOX = "/tmp/iflow-agent-config.json"
DEFAULT_COMMAND = ("iflow -p {task} --agent-config {agent_config} --tool-format hermes --workspace . "
                   "--session-dir /tmp/iflow-sessions")


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


class BlackBoxAgentConfig(AgentConfig):
    """`agent=blackbox`: the iFlow limits (max_turns = model calls, max_total_tokens, max_wall_seconds) plus the
    command to run. The command may use {task} (shell-quoted), {agent_config} (a JSON file in the sandbox holding
    this config's AgentConfig part, with the task's limits: `iflow --agent-config` runs with exactly what the
    white-box loop would), {max_turns}, {max_tokens} (per call) and {command_timeout}."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["blackbox"] = "blackbox"
    command: str = Field(DEFAULT_COMMAND, description="run in the workspace under `timeout`, with OPENAI_BASE_URL "
                                                      "(and IFLOW_*) pointing at the episode's proxy session")
    image: str | None = Field(AGENT_IMAGE, description="sandbox image for tasks without their own image (it must "
                                                       "hold the command; rock-agent has iflow); null: keep the "
                                                       "sandbox config's")
    shim_port: int = Field(SHIM_PORT, ge=1024, le=65535)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig, description="the proxy's limits (max_model_len must "
                               "match engine.max_model_len); its sampling is this config's `sampling`")

    def proxy_config(self) -> ProxyConfig:
        """The proxy serves exactly the configured behaviour policy: this agent config's sampling and per-call cap."""
        return self.proxy.model_copy(update={"sampling": self.sampling, "max_tokens": self.sampling.max_tokens,
                                             "request_timeout": min(self.proxy.request_timeout,
                                                                    self.policy_timeout)})
