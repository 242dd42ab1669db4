"""Metrics: the JSON-lines file is always written and survives a resume; wandb runs offline by default;
tensorboard on request; the progress bar takes the headline metrics."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

from rich.console import Console

from roll.config.training import MetricsConfig
from roll.metrics import MetricsLogger, Progress, headline, read_jsonl
from roll.trainer.group import merge_loss_metrics


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


def test_headline_formats_the_chosen_numeric_fields() -> None:
    assert headline({"loss": 0.123456, "success_rate": 0.5, "other": 1}, ("loss", "success_rate")) == \
        "loss=0.123  success_rate=0.5"
    assert headline({"loss": None, "success_rate": "n/a"}, ("loss", "success_rate")) == ""
    assert headline(None, ("loss",)) == ""


def test_progress_bar_shows_count_and_headline_metrics() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    bar = Progress(3, "rl", enabled=True, fields=("loss", "success_rate"), start=1, console=console)
    bar.update({"loss": 0.123456, "success_rate": 0.5, "other": 1})
    bar.close()
    text = out.getvalue()
    assert "rl" in text and "2/3" in text and "loss=0.123  success_rate=0.5" in text and "other" not in text
    silent = io.StringIO()
    off = Progress(3, "off", enabled=False, console=Console(file=silent))
    off.update({"loss": 1.0})
    off.close()
    assert silent.getvalue() == ""


def test_merge_uses_each_metrics_declared_reduction_not_its_name() -> None:
    rank0 = {"loss": 0.25, "grad_norm": 1.0, "lr": 0.1, "tokens": 10, "reductions": {"ratio_max": "max",
                                                                                    "num_tokens": "sum"},
             "records": [(3, {"ratio_max": 1.5, "maximal_share": 0.2, "num_tokens": 3.0, "min_len": 4.0})]}
    rank1 = {"loss": 0.5, "grad_norm": 1.0, "lr": 0.1, "tokens": 20, "reductions": {"ratio_max": "max",
                                                                                   "num_tokens": "sum"},
             "records": [(1, {"ratio_max": 2.5, "maximal_share": 0.6, "num_tokens": 1.0, "min_len": 8.0})]}
    merged = merge_loss_metrics([rank0, rank1])
    assert merged["loss"] == 0.75 and merged["train_tokens"] == 30.0
    assert merged["ratio_max"] == 2.5 and merged["num_tokens"] == 4.0
    # undeclared metrics are loss-token-weighted means whatever their names say
    assert merged["maximal_share"] == (3 * 0.2 + 1 * 0.6) / 4
    assert merged["min_len"] == (3 * 4.0 + 1 * 8.0) / 4


def test_the_losses_declare_their_non_mean_metrics() -> None:
    import torch

    from ipa import sft_loss

    out = sft_loss(torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), 6.0)
    assert out.reductions == {"num_tokens": "sum"} and out.metrics["num_tokens"] == 6.0
    merged = merge_loss_metrics([{"loss": 0.0, "grad_norm": None, "lr": 0.1, "tokens": 6, "records": [(6, m)],
                                  "reductions": out.reductions} for m in (out.metrics, out.metrics)])
    assert merged["num_tokens"] == 12.0


def test_run_update_merges_optimizer_steps_by_declared_reduction() -> None:
    from types import SimpleNamespace

    from roll.config.training import AlgorithmConfig
    from roll.trainer.update import run_update

    class FakeGroup:  # stands in for TrainerGroup (tested for real in test_train_trainer.py): two mini-batch steps
        def __init__(self) -> None:
            self.metric_reductions = {"num_tokens": "sum", "ratio_max": "max"}
            self.answers = iter([{"loss": 1.0, "num_tokens": 3.0, "ratio_max": 1.5, "max_len_share": 0.2,
                                  "train_tokens": 5.0},
                                 {"loss": 3.0, "num_tokens": 4.0, "ratio_max": 1.2, "max_len_share": 0.6,
                                  "train_tokens": 7.0}])

        def train_step(self, *args, **kwargs) -> dict[str, float]:
            return next(self.answers)

    update = SimpleNamespace(plan=[[], []], denominators=[1.0, 1.0], prefix_tokens=[0.0, 0.0])
    merged = run_update(FakeGroup(), update, AlgorithmConfig(name="reinforce"))
    assert merged["loss"] == 2.0 and merged["num_tokens"] == 7.0 and merged["ratio_max"] == 1.5
    assert merged["max_len_share"] == 0.4 and merged["train_tokens"] == 12.0 and merged["optimizer_steps"] == 2.0
