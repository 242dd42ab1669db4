"""Generation engines (vLLM, transformers) behind one contract, as Ray actors, and the iFlow token policy over them."""
from roll.engines.actor import EngineActor, EngineGroup, build_engine
from roll.engines.base import EngineError, Sampling
from roll.engines.config import EngineConfig
from roll.engines.policy import EngineUnavailable, LocalTokenPolicy, RayTokenPolicy

__all__ = ["EngineActor", "EngineConfig", "EngineError", "EngineGroup", "EngineUnavailable", "LocalTokenPolicy",
           "RayTokenPolicy", "Sampling", "build_engine"]
