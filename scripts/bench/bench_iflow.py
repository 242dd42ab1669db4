"""iflow benchmark: agent-loop overhead per turn (excluding model and tool time) and context-building time at 50 and
200 turns of history.

    .venv/bin/python scripts/bench/bench_iflow.py [--turns 60 --repeats 20]

Overhead: an Agent runs `--turns` turns against a real local workspace; the model is an instant stand-in that
returns a canned completion (its time, like the tool's, is measured and subtracted: `Turn.timings["overhead"]` =
total - model - tools). It covers parsing, validation, approval, audit slicing, observation cutting, context building
and the trajectory record. Message mode counts tokens with the default estimate; token mode uses the tiny model's
real tokenizer and chat template (built offline by roll.models.tiny).

Context building: a history of N turns (a ~60-token completion and a ~200-token observation each) is built into a
prompt: `messages` (HTTP policies), `token, extend` (the incremental path: previous prompt + completion + bridge),
`token, re-render` (a fork: the whole history through the chat template), and `compressing` (a budget of 1/3 of the
history, so stubs are computed). Each is the median of `--repeats` builds.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.context import ContextManager, Exchange
from iflow.policy.base import Completion
from iflow.tokens import ApproxCounter, ChatTemplateRenderer
from iflow.trajectory import ToolCall

CALL = '<tool_call>\n{"name": "view", "arguments": {"path": "a.py", "view_range": [1, 20]}}\n</tool_call>'
COMPLETION = "I will look at the first lines of the module to find where the mean is computed.\n" + CALL
OBSERVATION = "\n".join(f"{n:6}\tvalue_{n} = compute(value_{n - 1}, factor={n}) + offset" for n in range(1, 21))


class InstantMessageModel:
    """Stands in for the model: its time is excluded from the overhead anyway."""

    async def chat(self, messages, tools, sampling):
        return Completion(text=COMPLETION)


class InstantTokenModel:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = list(tokenizer(COMPLETION, add_special_tokens=False)["input_ids"]) + [
            tokenizer.convert_tokens_to_ids("<|im_end|>")]

    async def generate(self, prompt_ids, sampling):
        return Completion(text=COMPLETION, token_ids=self.ids, logprobs=[-0.5] * len(self.ids))


def overhead_ms(policy, turns: int) -> tuple[float, float]:
    """(median, p90) of the per-turn overhead in ms."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.py").write_text(OBSERVATION + "\n")
        config = AgentConfig(max_turns=turns, context=ContextConfig(max_context_tokens=1_000_000))

        async def run():
            async with LocalBackend(tmp) as backend:
                return await Agent(policy, backend, config).run("Find the bug.")

        trajectory = asyncio.run(run())
    values = sorted(1000 * turn.timings["overhead"] for turn in trajectory.turns[1:])  # turn 0 warms up
    return statistics.median(values), values[int(0.9 * (len(values) - 1))]


def filled(manager: ContextManager, turns: int, tokenizer) -> ContextManager:
    ids = list(tokenizer(COMPLETION, add_special_tokens=False)["input_ids"]) + [
        tokenizer.convert_tokens_to_ids("<|im_end|>")] if tokenizer is not None else []
    for index in range(turns):
        manager.build()
        manager.add(Exchange(index, COMPLETION, ids, ToolCall(name="view"), manager.cut_observation(OBSERVATION)))
    return manager


def build_ms(make, turns: int, repeats: int, tokenizer, reset: str | None) -> float:
    """Median ms of one `build()` on a history of `turns` turns. `reset`: "fork" drops the incremental state (the
    next build re-renders); "levels" also clears the compression levels (the next build compresses again)."""
    times = []
    for _ in range(repeats):
        manager = filled(make(), turns, tokenizer)
        if reset == "fork":
            manager._built_levels = None
        if reset == "levels":
            manager.levels = [0] * len(manager.levels)
            manager._built_levels = None
        started = time.perf_counter()
        manager.build()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from roll.models.resolve import default_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(str(default_tiny_model()))
    renderer = ChatTemplateRenderer(tokenizer)
    system, task = "You are a coding agent." * 20, "Fix the bug in stats.py so that the tests pass."

    rows = [("agent loop overhead / turn, message policy", *overhead_ms(InstantMessageModel(), args.turns)),
            ("agent loop overhead / turn, token policy", *overhead_ms(InstantTokenModel(tokenizer), args.turns))]
    print(f"\nAgent loop overhead per turn, excluding model and tool time ({args.turns} turns, local workspace)")
    print(f"{'case':<46}{'median ms':>12}{'p90 ms':>10}")
    for name, median, p90 in rows:
        print(f"{name:<46}{median:>12.2f}{p90:>10.2f}")

    big = ContextConfig(max_context_tokens=10_000_000)
    print(f"\nContext building, one build() on a history of N turns (median of {args.repeats})")
    print(f"{'case':<46}{'N=50 ms':>12}{'N=200 ms':>10}")
    cases = [
        ("messages (HTTP policy, estimated counts)", lambda: ContextManager(system, task, big, counter=ApproxCounter()),
         None, None),
        ("tokens, extend (no fork)", lambda: ContextManager(system, task, big, renderer), tokenizer, None),
        ("tokens, re-render (fork)", lambda: ContextManager(system, task, big, renderer), tokenizer, "fork"),
    ]
    for name, make, tok, reset in cases:
        print(f"{name:<46}" + "".join(f"{build_ms(make, n, args.repeats, tok, reset):>{w}.2f}"
                                      for n, w in ((50, 12), (200, 10))))
    values = []
    for n in (50, 200):
        budget = ContextConfig(max_context_tokens=max(2000, n * 300 // 3), keep_recent_turns=3)
        values.append(build_ms(lambda budget=budget: ContextManager(system, task, budget, renderer), n,
                               max(3, args.repeats // 4), tokenizer, "levels"))
    print(f"{'compressing to budget (tokens, fork)':<46}{values[0]:>12.2f}{values[1]:>10.2f}")


if __name__ == "__main__":
    main()
