"""The learning curve of a run as a PNG: rollout success rate (and mean reward) per step from metrics.jsonl, with the
held-out evaluations of the start and the result drawn as points at their steps."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [row for row in rows if row.get("success_rate") is not None]


def text_curve(rows: list[dict[str, Any]]) -> str:
    return "  ".join(f"{row['step']}:{row['success_rate']:.2f}" for row in rows)


def plot_learning_curve(rows: list[dict[str, Any]], out: str | Path, evals: dict[str, dict[str, Any]] | None = None,
                        title: str = "learning curve") -> Path:
    """Write the figure of `rows` (read_metrics) to `out`; `evals` maps a label to an evaluation with `success_rate`
    and `solved/total` (start at step 0, final at the last step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [row["success_rate"] for row in rows], marker="o", label="rollout success rate (sampled)")
    if any(row.get("reward_mean") is not None for row in rows):
        ax.plot(steps, [row.get("reward_mean") for row in rows], linestyle="--", alpha=0.6, label="rollout mean reward")
    last = steps[-1] if steps else 1
    for label, result in (evals or {}).items():
        x = 0 if label == "start" else last
        ax.scatter([x], [result["success_rate"]], s=80, marker="s", zorder=3,
                   label=f"held-out {label}: {result['solved']}/{result['total']}")
    ax.set_xlabel("RL step")
    ax.set_ylabel("success rate")
    ax.set_ylim(-1.05 if any((row.get("reward_mean") or 0) < 0 for row in rows) else -0.05, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
