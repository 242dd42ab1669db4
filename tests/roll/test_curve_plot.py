"""The run's learning curve: read from metrics.jsonl, printed as text, written as a PNG."""
from __future__ import annotations

import json
from pathlib import Path

from roll.curve_plot import plot_learning_curve, read_metrics, text_curve


def test_curve_is_read_printed_and_plotted(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "success_rate": 0.25, "reward_mean": -0.5}, {"step": 2, "note": "checkpoint only"},
            {"step": 3, "success_rate": 0.5, "reward_mean": 0.0}]
    metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    read = read_metrics(metrics)
    assert [r["step"] for r in read] == [1, 3]
    assert text_curve(read) == "1:0.25  3:0.50"
    out = plot_learning_curve(read, tmp_path / "curve.png", {"start": {"success_rate": 0.1, "solved": 3, "total": 32}})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
