"""Forward+backward time of the IPA loss against token-level GRPO (and the other losses) on one synthetic batch.

    .venv/bin/python scripts/bench/bench_ipa.py [--batch 64 --seq-len 4096 --chunks 30 --repeats 20]

Each row is the median over `--repeats` runs of: build the loss from a leaf `logp` [B, T] (standing in for the
model's output), call .backward(). Ratios are against GRPO measured in the same run. The plain-Python loop
reference of the tests (tests/ipa/ipa_reference.py: loss and hand-written gradient, from nested lists) runs on the
whole batch by default; `--ref-batch N` runs it on the first N sequences only, beside the vectorized IPA on the
same sub-batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "ipa")]

import ipa_reference

import ipa


def make_batch(B: int, T: int, chunks: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Rows of: a prompt, then `chunks` x (assistant turn, observation) with random lengths, then padding."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        used = int(T * (0.75 + 0.25 * torch.rand((), generator=g)))  # rows end at different lengths
        t = int(0.08 * used)  # prompt
        share = (used - t) / chunks
        for _ in range(chunks):
            n_assistant = max(1, int(share * (0.3 + 0.5 * torch.rand((), generator=g))))
            mask[b, t : min(t + n_assistant, used)] = True
            t += int(share)
    logp = -2.0 * torch.rand(B, T, generator=g)
    old = logp + 0.05 * torch.randn(B, T, generator=g)
    return {
        "logp": logp,
        "old_logp": old,
        "engine_logp": old + 0.05 * torch.randn(B, T, generator=g),
        "ref_logp": logp + 0.05 * torch.randn(B, T, generator=g),
        "assistant_mask": mask,
        "chunk_ids": ipa.chunk_index(mask),
        "rewards": (torch.rand(B, generator=g) > 0.5).float() * 2 - 1,
        "group_ids": torch.arange(B) // 8,
    }


def losses(x: dict[str, torch.Tensor]) -> dict[str, callable]:
    common = (x["old_logp"], x["engine_logp"], x["assistant_mask"], x["chunk_ids"], x["rewards"])
    adv = x["rewards"].unsqueeze(1).expand_as(x["logp"])
    return {
        "grpo (token-level, baseline)": lambda lp: ipa.grpo_loss(
            lp, x["old_logp"], x["assistant_mask"], x["rewards"], x["group_ids"]
        ),
        "ipa (Eq. 9)": lambda lp: ipa.ipa_loss(lp, *common),
        "grpo + kl k3": lambda lp: ipa.grpo_loss(
            lp, x["old_logp"], x["assistant_mask"], x["rewards"], x["group_ids"], kl_coef=0.01, ref_logp=x["ref_logp"]
        ),
        "gspo": lambda lp: ipa.gspo_loss(lp, x["old_logp"], x["assistant_mask"], x["rewards"], x["group_ids"]),
        "ppo": lambda lp: ipa.ppo_loss(lp, x["old_logp"], x["assistant_mask"], adv),
        "reinforce (Eq. 4-5)": lambda lp: ipa.reinforce_loss(lp, x["engine_logp"], x["assistant_mask"], x["rewards"]),
        "sft (Eq. 1-2)": lambda lp: ipa.sft_loss(lp, x["assistant_mask"]),
    }


def time_fwd_bwd(fns: dict[str, callable], logp: torch.Tensor, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds of loss + backward for each fn. The fns take turns within every repeat, so a load change on
    the machine hits them all alike and the ratios stay fair."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            leaf = logp.detach().clone().requires_grad_()
            start = time.perf_counter()
            fn(leaf).loss.backward()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def time_reference(x: dict[str, torch.Tensor], repeats: int) -> float:
    lists = {k: v.tolist() for k, v in x.items()}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ipa_reference.ipa(
            lists["logp"],
            lists["old_logp"],
            lists["engine_logp"],
            lists["assistant_mask"],
            lists["chunk_ids"],
            lists["rewards"],
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--chunks", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--ref-batch", type=int, default=None, help="sequences for the loop reference (all)")
    parser.add_argument("--ref-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x = make_batch(args.batch, args.seq_len, args.chunks)
    n_tokens = int(x["assistant_mask"].sum())
    print(
        f"batch {args.batch} x {args.seq_len} tokens, {ipa.chunks_per_row(x['chunk_ids']).float().mean():.1f} "
        f"chunks/sequence, {n_tokens} assistant tokens; torch {torch.__version__}, {torch.get_num_threads()} "
        f"CPU threads; median of {args.repeats} forward+backward runs"
    )
    rows = [(name, args.batch, seconds) for name, seconds in time_fwd_bwd(losses(x), x["logp"], args.repeats).items()]
    grpo = rows[0][2]

    ref_batch = min(args.ref_batch or args.batch, args.batch)
    sub = {k: v[:ref_batch] for k, v in x.items()}
    vectorized = rows[1][2]
    if ref_batch < args.batch:
        name = "ipa (Eq. 9)"
        vectorized = time_fwd_bwd({name: losses(sub)[name]}, sub["logp"], args.repeats)[name]
        rows.append(("ipa, vectorized (sub-batch)", ref_batch, vectorized))
    loop = time_reference(sub, args.ref_repeats)
    rows.append(("ipa, Python-loop reference", ref_batch, loop))

    print(f"\n| {'loss':<30} | {'batch':>5} | {'median ms':>10} | {'vs GRPO':>8} |")
    print(f"|{'-' * 32}|{'-' * 7}|{'-' * 12}|{'-' * 10}|")
    for name, batch, seconds in rows:
        ratio = f"{seconds / grpo:.2f}x" if batch == args.batch else "-"
        print(f"| {name:<30} | {batch:>5} | {seconds * 1e3:>10.2f} | {ratio:>8} |")
    print(
        f"\nvectorized IPA (forward+backward) is {loop / vectorized:.0f}x faster than the loop reference (loss and "
        f"hand-written gradient, no autograd, inputs already as lists; median of {args.ref_repeats}) on "
        f"{ref_batch} sequences."
    )


if __name__ == "__main__":
    main()
