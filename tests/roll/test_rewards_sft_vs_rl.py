"""scripts/experiments/sft_vs_rl.py: the RL budget turned into extra SFT steps, from a run directory's own
measurements; argument handling and the dry run (the full run trains and evaluates for as long as RL did)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from roll.config import load_config, save_config

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "experiments" / "sft_vs_rl.py"


@pytest.fixture(scope="module")
def sft_vs_rl():
    spec = importlib.util.spec_from_file_location("sft_vs_rl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sft_vs_rl"] = module  # dataclasses resolve the module's annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("sft_vs_rl", None)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A main-job run directory: saved configs, SFT steps of 2 s (median), RL steps of 100 s + 5 s checkpoints."""
    sft, rl = tmp_path / "sft", tmp_path / "rl"
    (sft / "sft_model").mkdir(parents=True)
    rl.mkdir()
    (sft / "sft_model" / "config.json").write_text("{}")
    save_config(load_config("sft", ["sft.batch_size=4"]), sft)
    save_config(load_config("train"), rl)
    _jsonl(sft / "sft_metrics.jsonl", [{"step": i, "step_s": s} for i, s in enumerate([1.0, 2.0, 2.0, 9.0], 1)])
    _jsonl(sft / "golden.jsonl", [{"id": str(i)} for i in range(10)])
    _jsonl(rl / "metrics.jsonl", [{"step": 1, "step_s": 100.0, "prev_checkpoint_s": 0.0},
                                  {"step": 2, "step_s": 100.0, "prev_checkpoint_s": 5.0}])
    (rl / "eval.json").write_text(json.dumps({"start": {"solved": 3, "total": 64},
                                              "final": {"solved": 20, "total": 64}}))
    return tmp_path


def test_the_rl_budget_becomes_sft_steps(sft_vs_rl, run_dir: Path) -> None:
    data = sft_vs_rl.plan_extra_sft(run_dir, "data")
    assert data.budget_s == 205.0 and data.sft_step_s == 2.0
    assert data.steps == 102 and data.episodes == 102 * 4 and data.epochs == 1
    epochs = sft_vs_rl.plan_extra_sft(run_dir, "epochs")
    assert epochs.episodes == 10 and epochs.epochs == 41  # ceil(102 * 4 / 10) passes over the start's data
    assert epochs.steps == 41 * 3
    assert sft_vs_rl.plan_extra_sft(run_dir, "data", budget_s=20.0).steps == 10


def test_the_extra_sft_continues_from_the_sft_start(sft_vs_rl, run_dir: Path, tmp_path: Path) -> None:
    plan = sft_vs_rl.plan_extra_sft(run_dir, "data")
    cfg = sft_vs_rl.extra_sft_config(run_dir, plan, tmp_path / "more")
    assert cfg.model.path == str((run_dir / "sft" / "sft_model").resolve())
    assert cfg.sft.expert_episodes == 408 and cfg.sft.data == [] and cfg.sft.epochs == 1
    assert cfg.task.seed != load_config("sft").task.seed  # fresh golden episodes
    again = sft_vs_rl.extra_sft_config(run_dir, sft_vs_rl.plan_extra_sft(run_dir, "epochs"), tmp_path / "more")
    assert again.sft.data == [str(run_dir / "sft" / "golden.jsonl")] and again.sft.epochs == 41
    evaluated = sft_vs_rl.eval_config_for(run_dir, run_dir / "sft" / "sft_model")
    assert evaluated.eval == load_config("train").eval


def test_dry_run_and_bad_arguments(sft_vs_rl, run_dir: Path, capsys) -> None:
    out = sft_vs_rl.main([str(run_dir), "--dry-run", "--mode", "epochs"])
    assert out["dry_run"] and out["plan"]["epochs"] == 41
    assert not (run_dir / "sft_more").exists()  # nothing ran
    with pytest.raises(SystemExit):
        sft_vs_rl.main([str(run_dir), "--budget-s", "-3", "--dry-run"])
    with pytest.raises(SystemExit):
        sft_vs_rl.main([str(run_dir), "--mode", "more", "--dry-run"])
    (run_dir / "rl" / "eval.json").unlink()
    with pytest.raises(SystemExit, match="eval.json is missing"):
        sft_vs_rl.main([str(run_dir), "--dry-run"])
