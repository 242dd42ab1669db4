"""The Docker engine connection, with an error that says how to start the engine when none answers."""
from __future__ import annotations

import functools
import os

import docker


class EngineUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=1)
def _cached_client() -> docker.DockerClient:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.DockerClient(base_url=host, timeout=120, max_pool_size=64)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing to the user
        raise EngineUnavailable(
            f"Docker engine not reachable at {host}: start it with `scripts/setup.sh` "
            f"(or `dockerd --bridge=none &` as root). Cause: {exc.__class__.__name__}: {exc}"
        ) from None
    return client


def client() -> docker.DockerClient:
    return _cached_client()
