"""Shared fixtures: the tiny default checkpoint and a local Ray instance.

Environment defaults for tests (set before vLLM or Ray import): offline hub, in-process vLLM engine with a small
KV cache, Ray token auth off (local only)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """Directory of the default tiny Qwen2 checkpoint (built once, cached under ~/.cache/letitflow)."""
    from roll.models.resolve import default_tiny_model

    return default_tiny_model()


@pytest.fixture(scope="session")
def ray_local() -> Iterator[object]:
    """A local Ray instance for the test session (2 CPUs, no dashboard); shut down at the end."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {k: os.environ[k] for k in (
                 "HF_HUB_OFFLINE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "RAY_AUTH_MODE",
                 "TOKENIZERS_PARALLELISM")}})
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    """The default sandbox image on a running Docker engine (scripts/setup.sh provides both)."""
    from rock import DEFAULT_IMAGE
    from rock.engine import client

    client().images.get(DEFAULT_IMAGE)
    return DEFAULT_IMAGE


@pytest.fixture(scope="session")
def vllm_engines(ray_local, tiny_model_path: Path):
    """One vLLM-CPU engine actor serving the tiny model, shared by the session (starting one costs ~10 s).

    A test that pushes other weights must push the tiny model's own weights back before it ends (the version number
    may keep growing); read the current version with `vllm_engines.policy_version()`."""
    from roll.engines.actor import EngineGroup
    from roll.engines.config import EngineConfig

    group = EngineGroup.create(tiny_model_path, EngineConfig(backend="vllm", num_cpus=0.5, max_model_len=768))
    yield group
    group.shutdown()
