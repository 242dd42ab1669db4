"""Every container rock starts is labelled with its owner (host, pid, process start time). A container whose owner
is gone is removed by the reaper. Quarantined sandboxes (renamed `rock-quarantine-*`) are left for forensics."""
from __future__ import annotations

import os
import socket
import threading
import time

import docker

from rock.engine import client as docker_client

MANAGED = "rock.managed"
QUARANTINE_PREFIX = "rock-quarantine-"
_reaped_once = False
_lock = threading.Lock()


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: the start time that, with the pid, identifies a process despite pid reuse."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        MANAGED: "1",
        "rock.owner.host": socket.gethostname(),
        "rock.owner.pid": str(pid),
        "rock.owner.start": str(process_start_ticks(pid)),
        "rock.created": f"{time.time():.3f}",
    }


def owner_alive(labels: dict[str, str]) -> bool:
    try:
        pid = int(labels.get("rock.owner.pid", "0"))
    except ValueError:
        return False
    ticks = process_start_ticks(pid)
    return ticks is not None and str(ticks) == labels.get("rock.owner.start")


def orphaned(name: str, labels: dict[str, str]) -> bool:
    if name.startswith(QUARANTINE_PREFIX):
        return False
    if labels.get("rock.owner.host") != socket.gethostname():
        return False  # another host's reaper owns it
    return not owner_alive(labels)


def reap(client: docker.DockerClient | None = None, older_than: float | None = None) -> list[str]:
    """Remove orphaned rock containers (and, with `older_than` seconds, any unquarantined one older than that).
    Returns the names removed."""
    api = (client or docker_client()).api
    removed = []
    for summary in api.containers(all=True, filters={"label": MANAGED}):
        name, labels = summary["Names"][0].lstrip("/"), summary.get("Labels") or {}
        created = float(labels.get("rock.created", "0") or 0)
        too_old = older_than is not None and time.time() - created > older_than
        if orphaned(name, labels) or (too_old and not name.startswith(QUARANTINE_PREFIX)):
            try:
                api.remove_container(summary["Id"], force=True)
                removed.append(name)
            except docker.errors.NotFound:
                pass
    return removed


def reap_once_per_process() -> None:
    """Run the reaper the first time this process starts a sandbox."""
    global _reaped_once
    with _lock:
        if _reaped_once:
            return
        _reaped_once = True
    reap()
