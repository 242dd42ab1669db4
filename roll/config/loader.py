"""Compose a config with Hydra (config groups + `key=value` overrides), validate it with pydantic, save it.

    cfg = load_config("rollout", ["rollout.group_size=8", "engine=hf"])
    run_dir = prepare_run_dir(cfg)          # creates the directory, writes config.yaml (the resolved config)

Every failure (unknown group option, unknown key, wrong type or value, malformed override) is a `ConfigError` whose
message is one line naming the key path and what was expected."""
from __future__ import annotations

import datetime as _dt
import os
import re
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from roll.config.errors import ConfigError, describe_validation_error
from roll.config.schema import RootConfig
from roll.config.strict import check_unknown_keys

CONFIG_DIR_ENV = "LETITFLOW_CONFIG_DIR"
SAVED_NAME = "config.yaml"
M = TypeVar("M", bound=BaseModel)


def default_config_dir() -> Path:
    """$LETITFLOW_CONFIG_DIR, else the repository's `configs/`."""
    env = os.environ.get(CONFIG_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


def _one_line(text: str) -> str:
    text = re.sub(r"\s*\n\s*", " ", str(text)).strip()
    text = re.sub(r"\s*full_key: .*$", "", text)
    return re.sub(r"\s*Config search path:.*$", "", text).strip()


def _unknown_key_message(schema: type[BaseModel], dotted: str) -> str:
    """`<first unknown segment>: unknown key (allowed here: ...)` for an override Hydra could not place."""
    from roll.config.strict import _model_types

    model: Any = schema
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        if not fields:
            break
        if part not in fields:
            return f"{'.'.join(parts[:depth + 1])}: unknown key (allowed here: {', '.join(sorted(fields))})"
        if typing.get_origin(fields[part].annotation) is dict:
            where = ".".join(parts[:depth + 1])
            return (f"{where}: is a mapping; set an entry with ++{where}.KEY=VALUE or the whole mapping with "
                    f"++{where}={{KEY: VALUE}}")
        nested = _model_types(fields[part].annotation)
        if len(nested) != 1:
            break
        model = nested[0]
    return f"{dotted}: unknown key"


def _hydra_message(exc: Exception, schema: type[BaseModel]) -> str:
    text = _one_line(str(exc))
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown and "not in struct" not in text or unknown and "To append" in text:
        return _unknown_key_message(schema, unknown.group(1))
    full_key = getattr(exc, "full_key", None)
    if "Missing mandatory value" in text and full_key:
        return f"{full_key}: required value is missing (set it on the command line: {full_key}=...)"
    return text


def compose(config_name: str = "rollout", overrides: Sequence[str] = (),
            config_dir: str | Path | None = None, schema: type[BaseModel] = RootConfig) -> dict[str, Any]:
    """The composed, interpolation-resolved config as a plain dict (not yet validated)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    directory = Path(config_dir) if config_dir is not None else default_config_dir()
    if not directory.is_dir():
        raise ConfigError(f"config directory not found: {directory}")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(directory.resolve()), version_base=None):
            composed = hydra_compose(config_name=config_name, overrides=list(overrides))
            data = OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise ConfigError(_hydra_message(exc, schema)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {config_name!r} is not a mapping")
    data.pop("hydra", None)
    return data


def validate(data: dict[str, Any], schema: type[M] = RootConfig) -> M:  # type: ignore[assignment]
    """Strict validation: unknown keys anywhere and type coercions (e.g. "3" for an int) are errors."""
    check_unknown_keys(schema, data)
    try:
        return schema.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_config(config_name: str = "rollout", overrides: Sequence[str] = (), config_dir: str | Path | None = None,
                schema: type[M] = RootConfig) -> M:  # type: ignore[assignment]
    return validate(compose(config_name, overrides, config_dir, schema), schema)


def prepare_run_dir(cfg: BaseModel, root: str | Path = "runs") -> Path:
    """Create the run directory (cfg.run.dir, or <root>/<run.name>-<timestamp>), record it in the config and save the
    resolved config there as config.yaml. Returns the directory."""
    run = cfg.run
    if run.dir is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run.dir = str(Path(root) / f"{run.name}-{stamp}-{os.getpid()}")
    directory = Path(run.dir)
    directory.mkdir(parents=True, exist_ok=True)
    save_config(cfg, directory)
    return directory


def save_config(cfg: BaseModel, directory: str | Path) -> Path:
    path = Path(directory) / SAVED_NAME
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path


def load_saved_config(path: str | Path, schema: type[M] = RootConfig) -> M:  # type: ignore[assignment]
    """Re-validate a saved config.yaml (a run directory or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / SAVED_NAME
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(_one_line(f"cannot read {path}: {exc}")) from None
    return validate(data, schema)
