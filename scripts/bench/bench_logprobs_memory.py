"""Peak memory of one micro-batch's log-probs, full-vocabulary logits (the old path) vs chunked (roll/trainer/logprobs).

    python scripts/bench/bench_logprobs_memory.py                       # vocab 152,064 (Qwen2), 1 x 2048 tokens
    python scripts/bench/bench_logprobs_memory.py --seq 4096 --chunks 512

Each variant runs in a fresh subprocess on the same randomly initialised Qwen2 model (built from a config; the vocabulary
is what matters, the transformer is small). Peak = the process's resident-set high-water mark (VmHWM, reset through
/proc/self/clear_refs just before the pass) minus its resident set at that moment, so the model itself is not counted.
Rows: a no-grad pass (old log-probs, reference) and a training pass (forward + backward of sum(logp)). The ratio is
old / new, measured in the same run."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = ("no-grad", "fwd+bwd")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from roll.trainer.logprobs import forward_logprobs, shifted_logprobs

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 2,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64, tie_word_embeddings=False,
                         max_position_embeddings=args.seq)
    model = Qwen2ForCausalLM(config).float()
    ids = torch.randint(0, args.vocab, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    grad = args.mode == "fwd+bwd"

    def run() -> torch.Tensor:
        with torch.set_grad_enabled(grad):
            if args.variant == "full":
                logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
                logp = shifted_logprobs(logits, ids)
            else:
                logp, _ = forward_logprobs(model, ids, mask, chunk_tokens=args.chunk)
            if grad:
                logp.sum().backward()
            return logp.detach()

    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current resident set
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    logp = run()
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM") - before
    print(json.dumps({"peak_mib": peak / 1024, "seconds": seconds, "checksum": float(logp.sum())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=152_064)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--chunks", default="1024,256", help="chunk sizes (tokens) of the new path, comma-separated")
    parser.add_argument("--chunk", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="no-grad", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="full", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    chunks = [int(c) for c in args.chunks.split(",")]
    variants = [("full", args.chunk)] + [("chunked", c) for c in chunks]
    results = {}
    for mode in MODES:
        for variant, chunk in variants:
            command = [sys.executable, __file__, "--child", "--mode", mode, "--variant", variant, f"--chunk={chunk}",
                       *(f"--{key}={getattr(args, key)}" for key in ("vocab", "hidden", "layers", "batch", "seq",
                                                                     "threads"))]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[(mode, variant, chunk)] = json.loads(out.strip().splitlines()[-1])

    tokens = args.batch * args.seq
    print(f"one micro-batch: {args.batch} x {args.seq} tokens, vocab {args.vocab:,}; one float32 [B,T,V] logits "
          f"copy = {tokens * args.vocab * 4 / 2**20:,.0f} MiB; peak MiB above the loaded model (seconds)")
    print("| pass | full logits (old) | " + " | ".join(f"chunks of {c} (new) | ratio old/new" for c in chunks) + " |")
    print("| --- | ---: | " + " | ".join("---: | ---:" for _ in chunks) + " |")
    for mode in MODES:
        old = results[(mode, "full", args.chunk)]
        cells = [f"{old['peak_mib']:,.0f} ({old['seconds']:.1f} s)"]
        for chunk in chunks:
            new = results[(mode, "chunked", chunk)]
            if abs(old["checksum"] - new["checksum"]) > 1e-3 * abs(old["checksum"]):
                raise SystemExit(f"{mode}: the two paths disagree ({old['checksum']} vs {new['checksum']})")
            cells += [f"{new['peak_mib']:,.0f} ({new['seconds']:.1f} s)", f"{old['peak_mib'] / new['peak_mib']:.1f}x"]
        print(f"| {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
