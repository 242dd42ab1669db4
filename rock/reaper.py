"""Every container rock starts is labelled with its owner (host, pid, process start time). A container whose owner
is gone is removed by the reaper. Quarantined sandboxes (renamed `rock-quarantine-*`) are left for forensics.

The reaper runs when a process starts its first sandbox, then every `REAP_INTERVAL` seconds in a background thread
of every process that owns sandboxes: when one process dies (a Ray env worker taken by the OOM killer), any other
on its host removes its sandboxes. `rock.cluster.reap_cluster()` runs it on every node of a Ray cluster at once."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import docker

from rock.engine import client as docker_client
from rock.procfs import read_stat

MANAGED = "rock.managed"
QUARANTINE_PREFIX = "rock-quarantine-"
REAP_INTERVAL = 30.0
log = logging.getLogger("rock.reaper")
_background: threading.Thread | None = None
_lock = threading.Lock()


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: the start time that, with the pid, identifies a process despite pid reuse."""
    stat = read_stat(pid)
    return stat.start_ticks if stat is not None else None


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
    """A malformed owner label names no live process: such a container is an orphan."""
    try:
        pid = int(labels.get("rock.owner.pid", "0"))
    except ValueError:
        return False
    if pid <= 0:
        return False
    ticks = process_start_ticks(pid)
    return ticks is not None and str(ticks) == labels.get("rock.owner.start")


def orphaned(name: str, labels: dict[str, str]) -> bool:
    if name.startswith(QUARANTINE_PREFIX):
        return False
    if labels.get("rock.owner.host") != socket.gethostname():
        return False  # another host's reaper owns it
    return not owner_alive(labels)


def _created(labels: dict[str, str]) -> float:
    try:
        return float(labels.get("rock.created", "0") or 0)
    except ValueError:
        return 0.0  # unknown age: counts as old


def reap(client: docker.DockerClient | None = None, older_than: float | None = None,
         labels: dict[str, str] | None = None) -> list[str]:
    """Remove orphaned rock containers (and, with `older_than` seconds, any unquarantined one older than that),
    only among those that also carry every label in `labels`. One container that cannot be removed (already being
    removed, an engine error) never stops the sweep. Returns the names removed."""
    api = (client or docker_client()).api
    removed = []
    wanted = [MANAGED, *(f"{key}={value}" for key, value in (labels or {}).items())]
    for summary in api.containers(all=True, filters={"label": wanted}):
        names = summary.get("Names") or [summary["Id"]]
        name, labels = names[0].lstrip("/"), summary.get("Labels") or {}
        too_old = older_than is not None and time.time() - _created(labels) > older_than
        if not (orphaned(name, labels) or (too_old and not name.startswith(QUARANTINE_PREFIX))):
            continue
        try:
            api.remove_container(summary["Id"], force=True)
            removed.append(name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # 409: a removal already under way; others: try the rest
            if exc.status_code != 409:
                log.warning("reaper: could not remove %s: %s", name, exc)
    return removed


def _reap_forever(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            reap()
        except Exception as exc:  # noqa: BLE001 - an engine hiccup must not end the reaper thread
            log.warning("reaper: sweep failed: %s", exc)


def start_background_reaper(interval: float = REAP_INTERVAL) -> None:
    """Sweep now, then every `interval` seconds in a daemon thread (once per process)."""
    global _background
    with _lock:
        if _background is not None and _background.is_alive():
            return
        _background = threading.Thread(target=_reap_forever, args=(interval,), name="rock-reaper", daemon=True)
        _background.start()
    reap()


def reap_once_per_process() -> None:
    """The first time this process starts a sandbox: sweep, and keep sweeping in the background."""
    start_background_reaper()
