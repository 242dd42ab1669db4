"""The figure of one paper-claim experiment (scripts/experiments/paper_claims.py): per arm, rollout success and
gradient norm by step (mean line, min-max band, thin lines per seed), test success per seed against the SFT
start, and per test instance (the worst quartile highlighted)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _value(step: dict[str, Any], keys: tuple[str, ...]) -> float:
    return next((float(step[k]) for k in keys if step.get(k) is not None), 0.0)


def _curves(by_seed: dict[Any, dict[str, Any]], *keys: str) -> tuple[list[int], list[list[float]]]:
    """Per seed, the first of `keys` that a step has, by step."""
    steps = sorted({s["step"] for run in by_seed.values() for s in run["steps"]})
    per_seed = [[next((_value(s, keys) for s in run["steps"] if s["step"] == step), float("nan")) for step in steps]
                for run in by_seed.values()]
    return steps, per_seed


def _band(axis: Any, steps: list[int], per_seed: list[list[float]], color: str, label: str) -> None:
    columns = list(zip(*per_seed))
    mean = [sum(c) / len(c) for c in columns]
    axis.fill_between(steps, [min(c) for c in columns], [max(c) for c in columns], color=color, alpha=0.15)
    for values in per_seed:
        axis.plot(steps, values, color=color, linewidth=0.6, alpha=0.5)
    axis.plot(steps, mean, color=color, linewidth=2, marker="o", label=f"{label} (mean of {len(per_seed)})")


def _share_solved(by_seed: dict[Any, dict[str, Any]], task: str) -> float:
    return sum(run["final"]["per_task"].get(task, 0.0) >= 1.0 for run in by_seed.values()) / len(by_seed)


def worst_quartile(summary: dict[str, Any]) -> list[str]:
    """The quarter of test instances the arms, all together, solve least often over their seeds (ties by name).
    Chosen by every arm at once, not by one: ranking by the reference arm alone would favour the others
    (regression to the mean)."""
    def rank(task: str) -> tuple[float, str]:
        return sum(_share_solved(by_seed, task) for by_seed in summary["runs"].values()), task

    return sorted(summary["start"]["per_task"], key=rank)[:max(1, len(summary["start"]["per_task"]) // 4)]


def _per_task(axis: Any, summary: dict[str, Any], colors: list[str]) -> None:
    """Each test instance's share of seeds that solve it, per arm; the worst quartile first, shaded."""
    worst = worst_quartile(summary)
    order = worst + sorted(set(summary["start"]["per_task"]) - set(worst))
    axis.axvspan(-0.5, len(worst) - 0.5, color="red", alpha=0.08, label=f"worst quartile ({len(worst)})")
    arms = list(summary["runs"].items())
    width = 0.8 / max(1, len(arms))
    for i, (arm, by_seed) in enumerate(arms):
        rates = [_share_solved(by_seed, task) for task in order]
        axis.bar([x - 0.4 + (i + 0.5) * width for x in range(len(order))], rates, width=width,
                 color=colors[i % len(colors)], label=arm)
    axis.set(title="per test instance: share of seeds that solve it", xlabel="test instance (worst quartile of all "
             "arms first)", ylabel="solved by seeds", ylim=(0, 1.05), xticks=[])
    axis.legend(loc="lower right", fontsize=8)


def plot_claim(summary: dict[str, Any], path: Path) -> Path:
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, (success, norms, test, tasks) = plt.subplots(1, 4, figsize=(20, 4.2))
    start = summary["start"]
    for i, (arm, by_seed) in enumerate(summary["runs"].items()):
        color = colors[i % len(colors)]
        _band(success, *_curves(by_seed, "plain_success_rate", "success_rate"), color, arm)
        _band(norms, *_curves(by_seed, "grad_norm"), color, arm)
        solved = [run["final"]["solved"] for run in by_seed.values()]
        test.scatter([i] * len(solved), solved, color=color, zorder=3)
        test.bar(i, sum(solved) / len(solved), color=color, alpha=0.4, width=0.6)
    test.axhline(start["solved"], color="black", linestyle="--", linewidth=1, label=f"SFT start {start['solved']}")
    test.set_xticks(range(len(summary["runs"])), list(summary["runs"]))
    test.set_ylim(0, start["total"])
    test.set(title=f"test solved (of {start['total']}), dots = seeds", ylabel="solved")
    test.legend(loc="lower right")
    success.set(title="rollout success by RL step (episodes not started from a prefix)", xlabel="RL step", ylabel="success rate", ylim=(-0.02, 1.02))
    norms.set(title="gradient norm before clipping", xlabel="RL step", ylabel="grad norm")
    for axis in (success, norms):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    success.legend(loc="lower right")
    _per_task(tasks, summary, colors)
    figure.suptitle(summary["title"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
