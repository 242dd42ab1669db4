"""Config composition and validation: overrides, groups, one-line errors naming the key, the saved config."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from roll.config import ConfigError, RootConfig, compose, load_config, load_saved_config, prepare_run_dir
from roll.config.strict import _model_types

ROOT = Path(__file__).resolve().parents[2]


def test_default_compose_and_overrides() -> None:
    cfg = load_config("rollout", ["rollout.group_size=8", "engine=hf", "task.split=eval", "agent.sampling.top_p=0.9"])
    assert isinstance(cfg, RootConfig)
    assert cfg.rollout.group_size == 8 and cfg.engine.backend == "hf" and cfg.task.split == "eval"
    assert cfg.agent.sampling.top_p == 0.9
    assert cfg.agent.tools == ["bash", "submit"]  # from configs/agent/default.yaml, not the pydantic default
    assert load_config("rollout", ["++model.tiny.num_hidden_layers=2"]).model.tiny == {"num_hidden_layers": 2}
    sync = load_config("rollout", ["rollout=sync", "task=latency_mix"])
    assert sync.rollout.mode == "sync" and sync.task.secret_word.latency is not None
    assert sync.task.secret_word.latency.slow_seconds == 10.0


@pytest.mark.parametrize("override, expected", [
    ("rollout.group_sise=3", r"^rollout\.group_sise: unknown key \(allowed here: .*group_size"),
    ("nosuch.key=1", r"^nosuch: unknown key \(allowed here: agent, .*engine, .*rollout"),
    ("rollout.group_size=0", r"^rollout\.group_size: expected greater than or equal to 1 \(got 0\)$"),
    ("rollout.group_size=abc", r"^rollout\.group_size: expected a valid integer \(got 'abc'\)$"),
    ("rollout.group_size='3'", r"^rollout\.group_size: expected a valid integer \(got '3'\)$"),  # no coercion
    ("rollout.mode=fast", r"^rollout\.mode: expected 'async' or 'sync' \(got 'fast'\)$"),
    ("engine=foo", r"Could not find 'engine/foo'.*Available options in 'engine': hf vllm$"),
    ("model=local", r"^model\.path: required value is missing"),
    ("+agent.sampling.temprature=2", r"^agent\.sampling\.temprature: unknown key \(allowed here: max_tokens"),
    ("rollout.filter.discard=[oops]", r"^rollout\.filter\.discard\[0\]: expected 'sandbox_error'"),
    ("task.secret_word.hops=3", r"^task\.secret_word\.hops: expected less than or equal to 2 \(got 3\)$"),
    ("model.path=/nonexistent", r"^model\.path: not a Hugging Face checkpoint directory"),
    ("model.tiny={num_hidden_layers: 2}", r"^model\.tiny: is a mapping; set an entry with \+\+model\.tiny\.KEY="),
    ("++model.tiny={hidden_sizes: 3}", r"^model\.tiny: unknown tiny-model option"),
])
def test_errors_are_one_line_naming_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_config("rollout", [override])
    assert "\n" not in str(info.value)


def _schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _model_types(field.annotation)
        if len(nested) == 1 and type(None) not in getattr(field.annotation, "__args__", ()):
            paths += _schema_paths(nested[0], path + ".")
        else:
            paths.append(path)
    return paths


def _has(data: dict[str, Any], path: str) -> bool:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


@pytest.mark.parametrize("config_name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_config_tree_lists_every_schema_key(config_name: str, tiny_model_path: Path) -> None:
    """Every key of every section a primary config composes can be overridden as key=value (Hydra only accepts
    keys the composed tree already has)."""
    try:
        compose(config_name)
        overrides: list[str] = []
    except ConfigError as exc:  # configs for real checkpoints: the path is mandatory, and says so
        assert str(exc).startswith("model.path: required value is missing")
        overrides = [f"model.path={tiny_model_path}"]
    data = compose(config_name, overrides)
    sections = {"run", "ray", "model", "engine", "task", "sandbox", "agent", "rollout"} if config_name == "rollout" \
        else set(data)
    assert sections <= set(data)
    missing = [p for p in _schema_paths(RootConfig) if p.split(".")[0] in sections and not _has(data, p)]
    assert missing == []
    load_config(config_name, overrides)  # and it validates


def test_run_dir_holds_the_resolved_config(tmp_path: Path) -> None:
    cfg = load_config("rollout", [f"run.dir={tmp_path / 'run'}", "rollout.staleness=2"])
    run_dir = prepare_run_dir(cfg)
    saved = load_saved_config(run_dir)
    assert saved == cfg and saved.rollout.staleness == 2
    unnamed = load_config("rollout", ["run.name=probe"])
    created = prepare_run_dir(unnamed, root=tmp_path)
    assert created.parent == tmp_path and created.name.startswith("probe-") and (created / "config.yaml").is_file()


def test_cli_reports_config_error_in_one_line_without_traceback() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "roll.cli", "rollout", "rollout.groups_per_step=-1"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["config error: rollout.groups_per_step: expected greater than or equal to 1 (got -1)"]
    assert "Traceback" not in proc.stderr + proc.stdout
