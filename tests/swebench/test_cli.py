"""`roll eval swebench` and `roll eval swebench-local` through the real typer app; `roll eval key=value` still reaches
the held-out evaluation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roll.cli import app
from roll.tasks.dataset import read_tasks

runner = CliRunner()


def test_eval_group_lists_swebench_and_keeps_overrides_routing() -> None:
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0 and "swebench" in result.output
    routed = runner.invoke(app, ["eval", "nosuchkey=1"])
    assert routed.exit_code == 2 and "nosuchkey" in routed.output


@pytest.mark.parametrize("args, message", [
    (["-p", "gold", "-m", "some/ckpt"], "exactly one of --predictions"),
    ([], "exactly one of --predictions"),
    (["-p", "gold", "--k", "0"], "--k must be at least 1"),
])
def test_argument_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["eval", "swebench", "-d", "local", "--run-id", "x", *args])
    assert result.exit_code == 2 and message in result.output


def test_unknown_dataset_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "swebench", "-d", str(tmp_path / "none.jsonl"), "-p", "gold",
                                 "--run-id", "x"])
    assert result.exit_code == 2 and "not found" in result.output


def test_tasks_export(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "swebench-local", "tasks", str(tmp_path / "tasks.jsonl")])
    assert result.exit_code == 0, result.output
    tasks = read_tasks(tmp_path / "tasks.jsonl")
    assert len(tasks) >= 10 and all(t.verifier.function == "roll.swebench.rl:verify" for t in tasks)


@pytest.mark.docker
def test_gold_k2_from_the_command_line(local_images: dict, tmp_path: Path) -> None:
    args = ["eval", "swebench", "-d", "local", "-p", "gold", "-i", "pytoolz__toolz-90001,r1chardj0n3s__parse-90001",
            "--run-id", "cli", "--k", "2", "-w", "2", "--log-dir", str(tmp_path / "logs"), "--report-dir",
            str(tmp_path), "-q", "--memory", "1g"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    average = json.loads((tmp_path / "gold.cli.avg@2.json").read_text())
    assert average["pass_at_1"] == 1.0 and average["resolved_rate_per_run"] == [1.0, 1.0]
    for run in ("cli.run1", "cli.run2"):
        report = json.loads((tmp_path / f"gold.{run}.json").read_text())
        assert report["resolved_instances"] == report["total_instances"] == 2
        assert str(tmp_path / f"gold.{run}.json") in result.stdout
