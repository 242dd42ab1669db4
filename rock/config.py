"""Sandbox configuration: hardened by default, every loosening an explicit choice."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_IMAGE = "rock-default:0.1.0"
KEEPALIVE_UID = 2147483646  # the keep-alive's own uid (see rock.sandbox)
_MEMORY = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)


class SandboxConfig(BaseModel):
    """What a sandbox is made of. Defaults: no network, no capabilities, non-root, bounded resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = DEFAULT_IMAGE
    cpus: float = Field(1.0, gt=0, le=256, description="CPU quota in cores")
    memory: str = Field("1g", description="memory limit, docker syntax: 512m, 2g")
    pids_limit: int = Field(256, ge=16, le=1_000_000)
    network_mode: Literal["none", "bridge", "host"] | str = "none"
    workdir: str = "/workspace"
    env: dict[str, str] = Field(default_factory=dict)
    user: str = "agent"
    labels: dict[str, str] = Field(default_factory=dict)
    command_timeout: float = Field(60.0, gt=0, description="default seconds per command")
    startup_timeout: float = Field(60.0, gt=0, description="seconds to create and start the container")
    max_output_bytes: int = Field(64 * 1024, ge=1024, description="output beyond this is cut to head + tail")
    cap_add: list[str] = Field(default_factory=list, description="capabilities to add back (all are dropped)")
    privileged: Literal[False] = False
    read_only_rootfs: bool = False
    tmpfs: dict[str, str] = Field(default_factory=dict)
    volumes: dict[str, dict[str, str]] = Field(default_factory=dict, description="docker SDK volumes mapping")
    seccomp_profile: str | None = Field(None, description="path to a seccomp profile (JSON); null = the engine's "
                                        "default. Checked at start: a profile that lets the agent create user "
                                        "namespaces is refused")
    egress_allow: list[str] = Field(default_factory=list, description="hosts reachable through rock's logging "
                                    "proxy (host, host:port, *.domain); empty = no way out at all")

    @field_validator("memory")
    @classmethod
    def _memory_syntax(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError(f"memory must look like 512m or 2g, got {value!r}")
        return value.lower()

    @field_validator("user")
    @classmethod
    def _not_the_keepalive(cls, value: str) -> str:
        if value.split(":")[0] == str(KEEPALIVE_UID):
            raise ValueError(f"uid {KEEPALIVE_UID} is reserved for the sandbox's keep-alive, which the agent must "
                             f"not be able to signal")
        return value

    @field_validator("workdir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"workdir must be an absolute path, got {value!r}")
        return value

    @field_validator("network_mode")
    @classmethod
    def _network(cls, value: str) -> str:
        if value in ("none", "bridge", "host") or value.startswith("container:") or re.match(r"^[\w.-]+$", value):
            return value
        raise ValueError(f"network_mode must be none, bridge, host or a network name, got {value!r}")

    def memory_bytes(self) -> int:
        units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
        value = self.memory
        if value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
