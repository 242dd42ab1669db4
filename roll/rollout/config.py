"""The `rollout` config section: groups, batches, concurrency, staleness, filtering, hang detection, output."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from roll.safety import SafetyConfig


class FilterConfig(BaseModel):
    """Dynamic filtering: episodes whose reward is unreliable are discarded and replaced by fresh samples."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_ratio: float = Field(0.5, ge=0, description="replacements per step, as a fraction of the step's episodes; "
                                                    "past it a group with an unreliable episode is dropped whole")
    discard: list[Literal["sandbox_error", "setup_error", "verifier_error", "timeout", "hung", "engine_error",
                          "prefix_refused"]] = \
        Field(default_factory=lambda: ["sandbox_error", "setup_error", "verifier_error", "hung", "engine_error",
                                       "prefix_refused"],
              description="which failure kinds count as unreliable ('timeout' = the agent's own wall limit)")

    def discards(self, status: str) -> bool:
        """An episode with this status is discarded (and relaunched, or its group dropped)."""
        return self.enabled and status != "ok" and status in self.discard


class ResamplingConfig(BaseModel):
    """Chunk-level initialized resampling (§3.2.4): some groups of hard tasks start from an expert prefix."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    data: list[str] = Field(default_factory=list, description="expert trajectories (JSON lines), matched to tasks "
                                                              "by task_id; only solved ones (reward >= 1) are used")
    from_successes: bool = Field(True, description="a solved rollout becomes the expert of its task if it has none")
    fraction: float = Field(0.5, ge=0, le=1, description="share of the groups made that resample a hard task "
                                                         "(when one is known)")
    max_success: float = Field(0.5, ge=0, le=1, description="a task is hard while its success rate from the "
                                                            "start (plain rollouts) is below this")
    anchors: Literal["parallel", "rollback"] = Field(
        "parallel", description="parallel: a group's samples start from anchors spread over the expert's chunks, "
                                "then from the crucial fork found; rollback: all from one anchor, K-1 first, moved "
                                "back while the policy succeeds from it")
    anchor_mode: Literal["uniform", "random"] = "uniform"
    rollback_step: int = Field(1, ge=1)
    rollback_threshold: float = Field(0.5, ge=0, le=1, description="rollback: success rate from an anchor at which "
                                                                   "the next group starts one step earlier")


class RolloutConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(4, ge=1, description="samples per task (the group baseline)")
    groups_per_step: int = Field(4, ge=1, description="groups per training step / rollout batch")
    num_steps: int = Field(1, ge=1, description="batches `roll rollout` collects")
    mode: Literal["async", "sync"] = Field(
        "async", description="async: episodes run independently with continuous batching; sync: lockstep "
                             "(every turn waits for the whole batch, every batch for its slowest episode)")
    staleness: int = Field(0, ge=0, description="0 = synchronous with training; k = accept samples up to k "
                                                "policy versions old")
    stale_action: Literal["drop", "recompute"] = Field(
        "drop", description="episodes older than the bound: drop, or re-run the same task with fresh weights")
    max_concurrency: int = Field(8, ge=1, description="episodes in flight over all env workers")
    num_env_workers: int = Field(1, ge=1, description="env worker actors (each runs episodes with asyncio)")
    pool_size: int = Field(4, ge=1, description="pre-started sandboxes per env worker")
    env_num_cpus: float = Field(0.25, ge=0, description="Ray CPUs reserved per env worker")
    sandbox_acquire_timeout: float = Field(120.0, gt=0)
    hang_grace: float = Field(60.0, gt=0, description="an episode running this long past its own wall limit "
                                                      "(agent + setup + verifier) counts as hung and is replaced")
    episode_timeout: float | None = Field(None, gt=0, description="hard cap on one episode's seconds (sandbox "
                                                                  "included); null = derived from the limits above")
    filter: FilterConfig = Field(default_factory=FilterConfig)
    safety: SafetyConfig = Field(default_factory=SafetyConfig, description="rock telemetry on every episode "
                                 "(roll/safety.py): events on turns, penalties, early stops, dropped trajectories")
    resampling: ResamplingConfig = Field(default_factory=ResamplingConfig)
    output: str = Field("trajectories.jsonl", description="file in the run directory")
    progress: bool = Field(True, description="rich progress bar")
