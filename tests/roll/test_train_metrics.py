"""Metrics: the JSON-lines file is always written and survives a resume; wandb runs offline by default;
tensorboard on request; the progress bar takes the headline metrics."""
from __future__ import annotations

import json
import math
from pathlib import Path

from roll.config.training import MetricsConfig
from roll.metrics import MetricsLogger, Progress, read_jsonl


def test_jsonl_always_written_and_cleaned(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, MetricsConfig(wandb="disabled"))
    logger.log(1, {"loss": 0.5, "grad_norm": math.nan, "note": "x"})
    logger.log(2, {"loss": 0.25})
    logger.close()
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["grad_norm"] is None and rows[0]["note"] == "x"  # NaN is not valid JSON: stored as null


def test_resume_drops_the_steps_that_will_run_again(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, MetricsConfig(wandb="disabled"))
    for step in (1, 2, 3):
        logger.log(step, {"loss": float(step)})
    logger.close()
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "lo')  # a line cut by a crash mid-write
    resumed = MetricsLogger(tmp_path, MetricsConfig(wandb="disabled"), resume_step=2)
    resumed.log(3, {"loss": 30.0})
    resumed.close()
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.0),
                                                                                          (3, 30.0)]


def test_wandb_offline_and_tensorboard(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, MetricsConfig(wandb="offline", tensorboard=True), config={"a": 1}, name="t")
    logger.log(1, {"loss": 1.0, "reward_mean": 0.5})
    logger.summary({"final": 1.0})
    logger.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    again = MetricsLogger(tmp_path, MetricsConfig(wandb="offline"), resume_step=1)  # same run id on resume
    again.close()
    assert (tmp_path / ".wandb_id").read_text() in json.dumps([p.name for p in (tmp_path / "wandb").iterdir()])


def test_progress_bar_formats_headline_metrics() -> None:
    bar = Progress(3, "rl", enabled=True, fields=("loss", "success_rate"))
    bar.update({"loss": 0.123456, "success_rate": 0.5, "other": 1})
    bar.update({"loss": None})
    bar.close()
    Progress(3, "off", enabled=False).update({"loss": 1.0})
