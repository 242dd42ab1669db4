"""Starting and stopping Ray for a run (a local instance unless `ray.address` names a cluster)."""
from __future__ import annotations

import os
from typing import Any

PASS_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE",
            "TOKENIZERS_PARALLELISM", "LETITFLOW_CACHE", "DOCKER_HOST", "PYTHONPATH")


def init_ray(cfg: Any) -> bool:
    """Initialise Ray from a RayConfig; returns True when this call started it (and should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local instances only; a cluster brings its own settings
    env = {key: os.environ[key] for key in PASS_ENV if key in os.environ}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                                  runtime_env={"env_vars": env})
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, **kwargs)
    return True


def shutdown_ray(started: bool) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
