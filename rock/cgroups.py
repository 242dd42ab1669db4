"""Per-container resource counters read from the host's cgroup filesystem (v1 and v2, cgroupfs or systemd)."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

ROOT = Path("/sys/fs/cgroup")


class CgroupStats(BaseModel):
    cpu_usage_ns: int | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    oom_kills: int = 0
    pids: int | None = None
    pids_limit_hits: int = 0


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_keyed(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _candidates(container_id: str, controller: str) -> list[Path]:
    names = [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    return [ROOT / controller / name for name in names] + [ROOT / name for name in names]


def _first_dir(container_id: str, controller: str) -> Path | None:
    return next((p for p in _candidates(container_id, controller) if p.is_dir()), None)


def cgroup_dir(container_id: str, controller: str) -> Path | None:
    """The container's directory under one cgroup v1 controller ("" = the v2 / unified hierarchy), if visible."""
    return _first_dir(container_id, controller)


def read_stats(container_id: str) -> CgroupStats:
    """Counters for one container; fields are None where this host's cgroups do not expose them."""
    v2 = _first_dir(container_id, "")
    if v2 is not None and (v2 / "cgroup.controllers").exists():
        cpu = _read_keyed(v2 / "cpu.stat").get("usage_usec")
        return CgroupStats(
            cpu_usage_ns=cpu * 1000 if cpu is not None else None,
            memory_bytes=_read_int(v2 / "memory.current"),
            memory_limit_bytes=_read_int(v2 / "memory.max"),
            oom_kills=_read_keyed(v2 / "memory.events").get("oom_kill", 0),
            pids=_read_int(v2 / "pids.current"),
            pids_limit_hits=_read_keyed(v2 / "pids.events").get("max", 0),
        )
    memory = _first_dir(container_id, "memory")
    pids = _first_dir(container_id, "pids")
    cpu = _first_dir(container_id, "cpuacct")
    return CgroupStats(
        cpu_usage_ns=_read_int(cpu / "cpuacct.usage") if cpu else None,
        memory_bytes=_read_int(memory / "memory.usage_in_bytes") if memory else None,
        memory_limit_bytes=_read_int(memory / "memory.limit_in_bytes") if memory else None,
        oom_kills=_read_keyed(memory / "memory.oom_control").get("oom_kill", 0) if memory else 0,
        pids=_read_int(pids / "pids.current") if pids else None,
        pids_limit_hits=_read_keyed(pids / "pids.events").get("max", 0) if pids else 0,
    )


def cgroup_procs(container_id: str) -> list[int] | None:
    """Host pids of every process in the container, or None when this host cannot see its cgroup."""
    for controller in ("pids", "memory", ""):
        directory = _first_dir(container_id, controller)
        if directory is not None and (directory / "cgroup.procs").exists():
            try:
                return [int(line) for line in (directory / "cgroup.procs").read_text().split()]
            except OSError:
                return None
    return None
