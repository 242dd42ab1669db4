"""Where the CLI's connection settings come from: command-line flag, then environment, then the config file
($IFLOW_HOME/settings.json, default ~/.iflow/settings.json), then defaults."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"

# setting -> (environment variables in order, config-file keys in order)
_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "base_url": (("IFLOW_BASE_URL", "OPENAI_BASE_URL"), ("baseUrl", "base_url")),
    "api_key": (("IFLOW_API_KEY", "OPENAI_API_KEY"), ("apiKey", "api_key")),
    "model": (("IFLOW_MODEL",), ("modelName", "model")),
}


class ConnectionSettings(BaseModel):
    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    model: str | None = None


def iflow_home() -> Path:
    return Path(os.environ.get("IFLOW_HOME") or Path.home() / ".iflow")


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    path = path or iflow_home() / "settings.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a JSON object, got {type(data).__name__}")
    return data


def resolve_settings(flags: dict[str, str | None], config_path: Path | None = None,
                     environ: dict[str, str] | None = None) -> ConnectionSettings:
    environ = os.environ if environ is None else environ
    config = load_config_file(config_path)
    values: dict[str, str] = {}
    for name, (env_names, keys) in _SOURCES.items():
        candidates = [flags.get(name), *(environ.get(env) for env in env_names), *(config.get(key) for key in keys)]
        chosen = next((value for value in candidates if value), None)
        if chosen is not None:
            values[name] = str(chosen)
    return ConnectionSettings(**values)
