"""Configs: a Hydra tree (`configs/`) composed and validated by pydantic models before anything starts."""
from roll.config.errors import ConfigError
from roll.config.loader import compose, load_config, load_saved_config, prepare_run_dir, save_config, validate
from roll.config.schema import RayConfig, RootConfig, RunConfig

__all__ = ["ConfigError", "RayConfig", "RootConfig", "RunConfig", "compose", "load_config", "load_saved_config",
           "prepare_run_dir", "save_config", "validate"]
