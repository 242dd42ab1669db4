"""The root config: one pydantic model per section, each defined in the package that owns it.

To add a section: define `class FooConfig(BaseModel)` (with `model_config = ConfigDict(extra="forbid")`) in the
package that uses it, add `foo: FooConfig = Field(default_factory=FooConfig)` below, and `configs/foo/default.yaml`
plus a `- foo: default` line in the primary configs that need it."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iflow.config import AgentConfig
from rock.config import SandboxConfig
from roll.config.placement import place
from roll.config.training import AlgorithmConfig, EvalConfig, LoopConfig, MetricsConfig, SFTConfig, TrainerConfig
from roll.engines.config import EngineConfig, WeightSyncConfig
from roll.models.config import ModelConfig
from roll.proxy.config import BlackBoxAgentConfig
from roll.rollout.config import RolloutConfig
from roll.tasks.config import TaskConfig


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("run", min_length=1)
    dir: str | None = Field(None, description="run directory; null = runs/<name>-<timestamp>")
    seed: int = 0


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="an existing cluster ('auto'); null = start a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray instance (null = all)")
    init_timeout: float = Field(60.0, gt=0)
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the cluster the run is laid out on (checked when the "
                                                         "config loads); null: none declared, no role may ask for one")
    gpus_per_node: int | None = Field(None, ge=1, description="GPUs per node (null: all on one node)")
    call_timeout: float = Field(3600.0, gt=0, description="seconds any blocking call to a trainer or reference actor "
                                                          "may take before the run fails with the call's name")


class RootConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: RunConfig = Field(default_factory=RunConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    # agent=blackbox (configs/agent/blackbox.yaml): an agent command in the sandbox, the model through roll/proxy/
    agent: AgentConfig | BlackBoxAgentConfig = Field(default_factory=AgentConfig, union_mode="left_to_right")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    # the training half (roll/config/training.py): configs/{trainer,algorithm,loop,sft,metrics,eval}/
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sync: WeightSyncConfig = Field(default_factory=WeightSyncConfig)  # trainer -> engines weights

    @model_validator(mode="after")
    def _placement(self) -> RootConfig:
        place(self)  # every GPU-using actor fits the declared GPUs (else one line naming the role that does not)
        if self.rollout.resampling.enabled and isinstance(self.agent, BlackBoxAgentConfig):
            raise ValueError("rollout.resampling.enabled needs the iflow agent: a black-box agent (agent=blackbox) "
                             "cannot replay an expert prefix")
        return self
