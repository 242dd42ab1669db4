"""Weight sync benchmark: trainer -> vLLM engine through Ray's object store vs a torch.distributed broadcast.

    .venv/bin/python scripts/bench/bench_weight_sync.py [--repeats 3] [--engines 1] [--bucket-mib 256]

For each model (the tiny default checkpoint, and a ~100M-parameter Qwen2 built from a config with random weights)
one DeepSpeed trainer (world size 1) and `--engines` vLLM-CPU engines start once; then pushes alternate between
`sync.method: object_store` and `sync.method: collective` (gloo here, NCCL on GPUs), each a full version-checked push.
Reported: median seconds per push of each method and the ratio object_store / collective, all from this run; the
collective group's one-off set-up (the first push) is listed apart. After the last push the engine's log-probs of a
few sequences must equal the trainer's (float32), or the benchmark fails."""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for key, value in {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "TOKENIZERS_PARALLELISM": "false", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                   "VLLM_CPU_KVCACHE_SPACE": "1"}.items():
    os.environ.setdefault(key, value)

from rich.console import Console
from rich.table import Table

console = Console(width=170)


def build_100m(tiny: Path, target: Path) -> Path:
    """A Qwen2 of ~100M parameters (12 layers, hidden 768) with the tiny model's tokenizer, random weights."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = Qwen2Config(vocab_size=32_768, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, head_dim=64, max_position_embeddings=2048,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def bench_model(label: str, path: Path, repeats: int, engines_n: int, bucket_bytes: int) -> dict:
    import ray
    import torch

    from roll.config.training import TrainerConfig
    from roll.engines.actor import EngineGroup
    from roll.engines.config import EngineConfig, WeightSyncConfig
    from roll.trainer.group import TrainerGroup

    engines = EngineGroup.create(path, EngineConfig(backend="vllm", num_engines=engines_n, num_cpus=0.01,
                                                    max_model_len=256))
    trainer = TrainerGroup(str(path), TrainerConfig(world_size=1, zero_stage=0), total_steps=1)
    times: dict[str, list[float]] = {"object_store": [], "collective": []}
    version, join_s, sent = 0, float("nan"), 0.0
    try:
        for repeat in range(repeats + 1):  # the first round warms both paths up (and builds the collective group)
            for method in ("object_store", "collective"):
                version += 1
                sync = WeightSyncConfig(method=method, bucket_bytes=bucket_bytes)
                result = trainer.push_weights(engines.actors, version, sync=sync)
                if repeat == 0:
                    join_s = result["sync_s"] if method == "collective" else join_s
                    continue
                times[method].append(result["sync_s"])
                sent = result["sync_bytes"]
        sequences = [[5 + (7 * i + j) % 200 for j in range(40)] for i in range(4)]
        served = ray.get(engines.actors[0].compute_logprobs.remote(sequences), timeout=300)
        trained = trainer.sequence_logprobs(sequences)
        error = max(float((torch.tensor(a) - torch.tensor(b)).abs().max()) for a, b in zip(served, trained))
        if error > 1e-4:
            raise SystemExit(f"{label}: engine log-probs differ from the trainer's after the collective push "
                             f"(max |diff| {error:.2e})")
    finally:
        trainer.shutdown()
        engines.shutdown()
    return {"label": label, "params": sent / 4, "mib": sent / 2**20, "error": error,  # float32 weights
            "object_store": statistics.median(times["object_store"]),
            "collective": statistics.median(times["collective"]), "first_collective": join_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed pushes per method and model")
    parser.add_argument("--engines", type=int, default=1, help="vLLM engine actors receiving each push")
    parser.add_argument("--bucket-mib", type=int, default=256)
    parser.add_argument("--skip-100m", action="store_true", help="only the tiny model")
    args = parser.parse_args()

    import ray

    from roll.models.resolve import default_tiny_model

    tiny = default_tiny_model()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {k: os.environ[k] for k in (
                 "HF_HUB_OFFLINE", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_KVCACHE_SPACE", "RAY_AUTH_MODE",
                 "TOKENIZERS_PARALLELISM")}})
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
            models = [("tiny", tiny)]
            if not args.skip_100m:
                started = time.perf_counter()
                models.append(("qwen2-100m", build_100m(tiny, Path(tmp) / "qwen2-100m")))
                console.print(f"built the ~100M model in {time.perf_counter() - started:.0f} s")
            for label, path in models:
                rows.append(bench_model(label, path, args.repeats, args.engines, args.bucket_mib << 20))
                console.print(f"{label}: done")
    finally:
        ray.shutdown()

    table = Table(title=f"weight sync, trainer -> {args.engines} vLLM-CPU engine(s), median of {args.repeats} pushes, "
                        f"buckets of {args.bucket_mib} MiB")
    for column in ("model", "parameters", "MiB", "object_store s", "collective s", "ratio object_store/collective",
                   "first collective push s (incl. group set-up)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["label"], f"{row['params'] / 1e6:.1f} M", f"{row['mib']:.0f}", f"{row['object_store']:.3f}",
                      f"{row['collective']:.3f}", f"{row['object_store'] / row['collective']:.2f}x",
                      f"{row['first_collective']:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
