"""The compute RL got, given to SFT instead: continue SFT from the main job's SFT start for as long as RL trained,
evaluate it on the same held-out split, and print SFT start / RL / more SFT side by side.

    .venv/bin/python scripts/experiments/sft_vs_rl.py RUN_DIR [--mode data|epochs] [--budget-s S] [--dry-run]

RUN_DIR is a main-job run directory (scripts/main_job.sh): sft/ (config.yaml, golden.jsonl, sft_metrics.jsonl,
sft_model/) and rl/ (config.yaml, metrics.jsonl, eval.json with "start" and "final").
- budget: RL's training wall time, the sum of step_s (rollout + old log-probs + update + sync) and checkpoint
  times in rl/metrics.jsonl (evaluation excluded), unless --budget-s gives it;
- steps: budget / the median seconds of one SFT optimizer step of the SFT start's own run (sft_metrics.jsonl),
  at the SFT start's batch size;
- mode data (default): that many steps over fresh golden episodes (observing expert, a seed the SFT start did not
  use), one epoch; mode epochs: that many steps as more epochs over the SFT start's own golden.jsonl.
The new model is evaluated with the RL run's eval section (same split, instances and temperature). The golden
episodes' own generation time is reported apart (the SFT start's golden data was not counted either).
Results go to RUN_DIR/sft_more/ (sft_vs_rl.json beside the SFT run's files).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rich.console import Console
from rich.table import Table

console = Console(width=150, stderr=True)
FRESH_SEED_OFFSET = 7919  # task.seed + this for the fresh golden episodes (their instances differ from the start's)


@dataclass
class ExtraSFTPlan:
    budget_s: float  # RL's training wall time (or --budget-s)
    sft_step_s: float  # median seconds of one SFT optimizer step of the SFT start
    steps: int  # optimizer steps of the extra SFT
    batch_size: int
    mode: str  # data | epochs
    episodes: int  # fresh golden episodes (mode data) or the SFT start's sequences (mode epochs)
    epochs: int
    task_seed: int | None  # task.seed of the fresh golden episodes (mode data)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rl_training_seconds(rl_dir: Path) -> float:
    rows = read_jsonl(rl_dir / "metrics.jsonl")
    steps = [r for r in rows if r.get("step_s") is not None]
    if not steps:
        raise SystemExit(f"{rl_dir / 'metrics.jsonl'}: no RL steps with step_s")
    return sum(r["step_s"] + (r.get("prev_checkpoint_s") or 0.0) for r in steps)


def sft_step_seconds(sft_dir: Path) -> float:
    rows = [r for r in read_jsonl(sft_dir / "sft_metrics.jsonl") if r.get("step_s") is not None]
    if not rows:
        raise SystemExit(f"{sft_dir / 'sft_metrics.jsonl'}: no SFT steps with step_s")
    return statistics.median(r["step_s"] for r in rows)


def plan_extra_sft(run_dir: Path, mode: str, budget_s: float | None = None) -> ExtraSFTPlan:
    """How much more SFT the RL budget buys, from the run's own measurements."""
    from roll.config import load_saved_config

    sft_dir, rl_dir = run_dir / "sft", run_dir / "rl"
    for needed in (sft_dir / "config.yaml", sft_dir / "sft_metrics.jsonl", sft_dir / "sft_model" / "config.json",
                   rl_dir / "config.yaml", rl_dir / "metrics.jsonl", rl_dir / "eval.json"):
        if not needed.is_file():
            raise SystemExit(f"not a finished main-job run directory: {needed} is missing")
    cfg = load_saved_config(sft_dir)
    budget = rl_training_seconds(rl_dir) if budget_s is None else budget_s
    step_s = sft_step_seconds(sft_dir)
    steps = max(1, round(budget / step_s))
    batch = cfg.sft.batch_size
    if mode == "data":
        return ExtraSFTPlan(budget, step_s, steps, batch, mode, steps * batch, 1, cfg.task.seed + FRESH_SEED_OFFSET)
    golden = sft_dir / "golden.jsonl"
    if not golden.is_file():
        raise SystemExit(f"--mode epochs reuses the SFT start's golden data, and {golden} is missing")
    sequences = len(read_jsonl(golden))
    epochs = max(1, math.ceil(steps * batch / sequences))
    return ExtraSFTPlan(budget, step_s, epochs * math.ceil(sequences / batch), batch, mode, sequences, epochs, None)


def extra_sft_config(run_dir: Path, plan: ExtraSFTPlan, out_dir: Path):
    """The SFT start's config, continued from its model with the planned data and epochs."""
    from roll.config import load_saved_config

    cfg = load_saved_config(run_dir / "sft")
    sft = cfg.sft.model_copy(update={"epochs": plan.epochs, "output_dir": str(out_dir / "sft_model")})
    if plan.mode == "data":
        sft = sft.model_copy(update={"data": [], "expert_episodes": plan.episodes})
        task = cfg.task.model_copy(update={"seed": plan.task_seed})  # new golden episodes (train split)
    else:
        sft = sft.model_copy(update={"data": [str(run_dir / "sft" / "golden.jsonl")]})
        task = cfg.task
    model = cfg.model.model_copy(update={"path": str((run_dir / "sft" / "sft_model").resolve())})
    run = cfg.run.model_copy(update={"dir": str(out_dir), "name": f"{cfg.run.name}-more"})
    return cfg.model_copy(update={"sft": sft, "task": task, "model": model, "run": run})


def eval_config_for(run_dir: Path, model_dir: Path):
    """The RL run's config (its eval section: split, instances, temperature) pointed at `model_dir`."""
    from roll.config import load_saved_config

    cfg = load_saved_config(run_dir / "rl")
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": str(model_dir.resolve())})})


def results_table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="same extra compute: RL vs more SFT (held-out split of the RL run's eval section)")
    for column in ("policy", "solved", "success", "extra wall s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for name, row in rows.items():
        table.add_row(name, f"{row['solved']}/{row['total']}", f"{100 * row['solved'] / max(1, row['total']):.1f}%",
                      "" if row.get("seconds") is None else f"{row['seconds']:.0f}")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished main-job run directory (sft/ and rl/)")
    parser.add_argument("--mode", choices=("data", "epochs"), default="data",
                        help="data: fresh golden episodes, one epoch; epochs: more epochs over sft/golden.jsonl")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds of SFT (default: RL's training time)")
    parser.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/sft_more")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the SFT config, run nothing")
    args = parser.parse_args(argv)
    if args.budget_s is not None and args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run_dir = args.run_dir.resolve()
    out_dir = (args.out or run_dir / "sft_more").resolve()
    plan = plan_extra_sft(run_dir, args.mode, args.budget_s)
    cfg = extra_sft_config(run_dir, plan, out_dir)
    console.print(f"plan: {json.dumps(asdict(plan))}")
    rl_eval = json.loads((run_dir / "rl" / "eval.json").read_text())
    rows = {"SFT start": dict(rl_eval["start"], seconds=None),
            "RL (IPA)": dict(rl_eval["final"], seconds=plan.budget_s)}
    if args.dry_run:
        console.print(f"would train SFT from {cfg.model.path} -> {cfg.sft.output_dir} "
                      f"(epochs {cfg.sft.epochs}, data {cfg.sft.data or f'{cfg.sft.expert_episodes} new episodes'})")
        console.print(results_table(rows))
        return {"plan": asdict(plan), "dry_run": True}

    from roll.config import prepare_run_dir
    from roll.evaluate import evaluate_checkpoint, paired_comparison
    from roll.train_cli import run_sft_command

    directory = prepare_run_dir(cfg)
    clock = time.perf_counter()
    model_dir = run_sft_command(cfg, directory)
    sft_wall = time.perf_counter() - clock
    train_s = sum(r["step_s"] for r in read_jsonl(directory / "sft_metrics.jsonl") if r.get("step_s") is not None)
    result = evaluate_checkpoint(eval_config_for(run_dir, Path(model_dir)), label="more SFT")
    rows["more SFT"] = dict(result.as_dict(), seconds=train_s)
    summary = {"plan": asdict(plan), "sft_train_s": train_s, "sft_wall_s": sft_wall, "results": rows}
    Console().print(results_table(rows))
    versus_rl = paired_comparison(rl_eval["final"]["per_task"], result.per_task)
    versus_start = paired_comparison(rl_eval["start"]["per_task"], result.per_task)
    summary["paired"] = {"more_sft_vs_rl": asdict(versus_rl), "more_sft_vs_start": asdict(versus_start)}
    (out_dir / "sft_vs_rl.json").write_text(json.dumps(summary, indent=1))
    print(versus_rl.line(before="RL", after="more SFT"))
    print(versus_start.line(before="the SFT start", after="more SFT"))
    print(f"SFT training {train_s:.0f} s (wall with golden data and start-up {sft_wall:.0f} s; "
          f"{plan.steps} steps planned from the SFT start's {plan.sft_step_s:.1f} s per step) against "
          f"RL training {plan.budget_s:.0f} s")
    return summary


if __name__ == "__main__":
    main()
