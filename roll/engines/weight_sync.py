"""Weights trainer -> engines through a torch.distributed broadcast (`sync.method: collective`).

Trainer rank 0 is rank 0 of a group of its own, engine i is rank i + 1. The group never touches the trainer's
DeepSpeed group or vLLM's: it is built directly on a `TCPStore` that trainer rank 0 hosts (on 127.0.0.1 by default),
gloo on CPU and NCCL on GPUs, the same code otherwise. A push is a plan of buckets known to every side beforehand
(names, shapes, dtypes); each bucket travels as one flat tensor per dtype, and the engine loads it in place before
the next one, so neither side holds a second full copy of the model."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

GROUP_PREFIX = "roll-weight-sync"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "float32"

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count


Bucket = list[TensorSpec]


def layer_of(name: str) -> str:
    """'model.layers.3' for 'model.layers.3.self_attn.q_proj.weight'; the module path for anything else."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1])


def bucket_ends(names: list[str], sizes: list[int], bucket_bytes: int) -> list[bool]:
    """For each parameter, whether a bucket ends after it: once `bucket_bytes` are reached, at the next layer boundary
    (the engine fuses a layer's projections, q/k/v and gate/up, on load), and always after the last one."""
    ends, filled = [], 0
    for index, (name, size) in enumerate(zip(names, sizes)):
        filled += size
        last = index == len(names) - 1
        end = last or (filled >= bucket_bytes and layer_of(names[index + 1]) != layer_of(name))
        ends.append(end)
        filled = 0 if end else filled
    return ends


def plan_buckets(specs: list[TensorSpec], bucket_bytes: int) -> list[Bucket]:
    import torch

    sizes = [spec.numel * torch.empty(0, dtype=getattr(torch, spec.dtype)).element_size() for spec in specs]
    plan: list[Bucket] = [[]]
    for spec, end in zip(specs, bucket_ends([s.name for s in specs], sizes, bucket_bytes)):
        plan[-1].append(spec)
        if end:
            plan.append([])
    return [bucket for bucket in plan if bucket]


def backend_for_device(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def open_store(host: str, timeout_s: float) -> tuple[Any, int]:
    """The group's TCPStore, hosted here on an ephemeral port of `host`: (store, port)."""
    import torch.distributed as dist

    store = dist.TCPStore(host, 0, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout_s))
    return store, store.port


def join_group(host: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float,
               store: Any = None) -> Any:
    """This process's member of the sync group (blocks until all `world_size` members have joined)."""
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    if store is None:
        store = dist.TCPStore(host, port, is_master=False, timeout=timeout)
    prefixed = dist.PrefixStore(GROUP_PREFIX, store)
    if backend == "gloo":
        options = dist.ProcessGroupGloo._Options()
        loopback = host == "localhost" or host.startswith("127.") or host == "::1"
        # On one node the group stays on the loopback interface; across nodes each member binds its own default one.
        options._devices = [dist.ProcessGroupGloo.create_device(hostname=host) if loopback
                            else dist.ProcessGroupGloo.create_default_device()]
        options._timeout = timeout
        return dist.ProcessGroupGloo(prefixed, rank, world_size, options)
    if backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(prefixed, rank, world_size, options)
    raise ValueError(f"unknown weight-sync backend {backend!r}")


def broadcast_bucket(group: Any, bucket: Bucket, tensors: dict[str, Any] | None, device: str) -> list[tuple[str, Any]]:
    """Broadcast one bucket from rank 0: one flat tensor per dtype. Rank 0 passes `tensors` (name -> tensor); every
    rank gets [(name, tensor)] back, views into the received buffers, in plan order."""
    import torch

    received: dict[str, Any] = {}
    for dtype in dict.fromkeys(spec.dtype for spec in bucket):
        specs = [spec for spec in bucket if spec.dtype == dtype]
        if tensors is not None:
            flat = torch.cat([tensors[spec.name].reshape(-1).to(device) for spec in specs])
        else:
            flat = torch.empty(sum(spec.numel for spec in specs), dtype=getattr(torch, dtype), device=device)
        group.broadcast(flat, 0).wait()
        offset = 0
        for spec in specs:
            received[spec.name] = flat[offset: offset + spec.numel].view(spec.shape)
            offset += spec.numel
    return [(spec.name, received[spec.name]) for spec in bucket]


def send_buckets(group: Any, plan: list[Bucket], weights: Iterable[tuple[str, Any]], device: str) -> int:
    """Rank 0: broadcast `weights` (an iterator of (name, tensor) in plan order) bucket by bucket; returns bytes."""
    sent = 0
    source: Iterator[tuple[str, Any]] = iter(weights)
    for bucket in plan:
        tensors = {}
        for spec in bucket:
            name, tensor = next(source)
            if name != spec.name or tuple(tensor.shape) != spec.shape:
                raise ValueError(f"weights out of plan: got {name} {tuple(tensor.shape)}, planned {spec.name} "
                                 f"{spec.shape}")
            tensors[name] = tensor
        broadcast_bucket(group, bucket, tensors, device)
        sent += sum(t.numel() * t.element_size() for t in tensors.values())
    return sent
