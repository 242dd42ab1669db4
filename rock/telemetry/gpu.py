"""GPU work on training hosts: every process using a GPU should be a known trainer or engine. Anything else is a
`compute.anomaly` (the paper's agent mined crypto on the training GPUs). Reads NVML through `pynvml` where it
exists; the classification is a pure function so it is tested without a GPU."""
from __future__ import annotations

import time
from dataclasses import dataclass

from rock.telemetry.events import Event, make_event


@dataclass(frozen=True)
class GpuProcess:
    gpu: int
    pid: int
    used_memory_mb: float
    sm_utilization: float | None = None  # percent, when NVML reports per-process samples


def classify(processes: list[GpuProcess], known_pids: set[int], sandbox_of: dict[int, str] | None = None,
             min_memory_mb: float = 1.0) -> list[Event]:
    """An event for each GPU process that is not a known trainer/engine. `sandbox_of` maps host pids that belong
    to sandboxes (their GPU use is the worst case: an agent reached a GPU)."""
    events = []
    for proc in processes:
        if proc.pid in known_pids or proc.used_memory_mb < min_memory_mb:
            continue
        sandbox = (sandbox_of or {}).get(proc.pid, "")
        events.append(make_event(
            "compute.anomaly", "unknown-gpu-process",
            f"pid {proc.pid} uses GPU {proc.gpu} ({proc.used_memory_mb:.0f} MB"
            + (f", {proc.sm_utilization:.0f}% SM" if proc.sm_utilization is not None else "") + ")",
            severity="critical" if sandbox else "high", sandbox=sandbox, pid=proc.pid, source="nvml",
            detail={"gpu": proc.gpu, "memory_mb": proc.used_memory_mb, "sm": proc.sm_utilization}))
    return events


def nvml_processes() -> list[GpuProcess] | None:
    """Current GPU processes from NVML, or None where there is no NVML (no GPU, no driver, no pynvml)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound and friends: no GPU here
        return None
    try:
        found = []
        since = int((time.time() - 5) * 1e6)
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                samples = {s.pid: float(s.smUtil) for s in pynvml.nvmlDeviceGetProcessUtilization(handle, since)}
            except Exception:  # noqa: BLE001 - not supported on every GPU
                samples = {}
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                memory = (proc.usedGpuMemory or 0) / 2**20
                found.append(GpuProcess(index, proc.pid, memory, samples.get(proc.pid)))
        return found
    finally:
        pynvml.nvmlShutdown()
