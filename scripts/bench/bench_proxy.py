"""Model proxy overhead per model call: the same prompts sent to the same in-process engine directly (the
baseline: `await policy.generate(prompt_ids, sampling)`, prompt already tokenized) and through the proxy (the
official `openai` client over the proxy's unix socket: HTTP, chat-template rendering, recording, parsing), in one
run, greedy so both paths generate the same tokens. Calls alternate between the paths, prompt by prompt.

    .venv/bin/python scripts/bench/bench_proxy.py [--backend vllm|hf] [--calls 40] [--max-tokens 16] [--episodes 4] [--model DIR]

Prints median and p95 per path, and the paired per-call overhead (proxy - direct) with its ratio to the direct
call's time. With `--episodes N` (needs Docker and the rock-agent image) a second table: whole secret_word episodes,
the white-box iFlow loop against the black-box `iflow` CLI in the sandbox through the proxy (configs/agent/
blackbox.yaml; the white-box loop gets its AgentConfig part: same limits, context, tools), same engine, same tasks,
same sandbox pool (rock-agent image), alternating; median and p95 wall time per episode."""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
for key, value in {"HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
                   "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)

from rich.console import Console
from rich.table import Table


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def episodes_table(engine, tokenizer, count: int) -> Table:
    from iflow.config import AgentConfig
    from rock import SandboxConfig, SandboxPool
    from roll.config import load_config
    from roll.engines.policy import LocalTokenPolicy
    from roll.proxy.config import BlackBoxAgentConfig
    from roll.proxy.sandbox_link import new_socket_path, proxy_volumes
    from roll.proxy.server import ProxyServer
    from roll.rollout.blackbox import BlackBoxEpisodeRunner, iflow_config_json
    from roll.rollout.episode import EpisodeRunner
    from roll.tasks.secret_word import SecretWordOptions, make_task

    black_cfg = load_config("rollout", ["agent=blackbox", "engine.max_model_len=768"]).agent
    assert isinstance(black_cfg, BlackBoxAgentConfig)
    white_cfg = AgentConfig.model_validate_json(iflow_config_json(black_cfg))
    policy = LocalTokenPolicy(engine, tokenizer)
    refused: dict[str, int] = {}
    rows: dict[str, list[tuple[float, int, int, bool]]] = {"white-box iFlow loop (baseline)": [],
                                                     "black-box iflow CLI through the proxy": []}
    with ProxyServer(None, black_cfg.proxy_config(), uds=new_socket_path(), tokenizer=tokenizer) as proxy, \
            SandboxPool(SandboxConfig(image=black_cfg.image, volumes=proxy_volumes(proxy.uds)), size=1) as pool:
        runners = {"white-box iFlow loop (baseline)": EpisodeRunner(pool, white_cfg),
                   "black-box iflow CLI through the proxy": BlackBoxEpisodeRunner(pool, black_cfg, proxy)}
        loop = asyncio.new_event_loop()
        for index in range(count):
            task = make_task(index, options=SecretWordOptions(words=4, note_path="note.txt"))
            for name, runner in runners.items():
                started = time.perf_counter()
                result = loop.run_until_complete(runner.run(task, policy, trajectory_id=f"{name[:5]}-{index}"))
                turns = result.trajectory.turns
                for status, n in result.trajectory.metadata.get("proxy", {}).get("statuses", {}).items():
                    if status != "ok":
                        refused[status] = refused.get(status, 0) + n
                rows[name].append((time.perf_counter() - started, len(turns),
                                   sum(len(t.completion_ids) for t in turns), result.trajectory.reward == 1.0))
        loop.close()
    table = Table(title=f"episode wall time, secret_word, {count} episodes each; "
                        f"proxy calls not served: {refused or 'none'}")
    for column in ("agent", "median s", "p95 s", "ratio (median)", "turns / episode", "tokens / episode", "solved"):
        table.add_column(column, justify="right" if column != "agent" else "left")
    base = statistics.median(r[0] for r in rows["white-box iFlow loop (baseline)"])
    for name, values in rows.items():
        seconds = [v[0] for v in values]
        table.add_row(name, f"{statistics.median(seconds):.2f}", f"{p95(seconds):.2f}",
                      f"{statistics.median(seconds) / base:.2f}", f"{statistics.mean(v[1] for v in values):.1f}",
                      f"{statistics.mean(v[2] for v in values):.0f}", f"{sum(v[3] for v in values)}/{len(values)}")
    return table


def main(backend: str, calls: int, max_tokens: int, episodes: int = 0, model: str | None = None) -> None:
    import openai
    from transformers import AutoTokenizer

    from iflow.policy.base import SamplingParams
    from roll.engines.actor import build_engine
    from roll.engines.config import EngineConfig
    from roll.engines.policy import LocalTokenPolicy
    from roll.proxy.config import ProxyConfig
    from roll.proxy.render import PromptRenderer
    from roll.proxy.server import ProxyServer
    from roll.models.resolve import default_tiny_model

    model = model or default_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(model)
    engine = build_engine(model, EngineConfig(backend=backend, max_model_len=768))
    policy = LocalTokenPolicy(engine, tokenizer)
    sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    config = ProxyConfig(sampling=sampling, max_tokens=max_tokens, max_model_len=768)
    renderer = PromptRenderer(tokenizer)
    conversations = [[{"role": "system", "content": "You are a coding agent."},
                      {"role": "user", "content": f"Task {i}: read note{i}.txt and write the word into answer.txt"}]
                     for i in range(calls)]
    direct, proxied, overhead, same = [], [], [], 0
    with ProxyServer(policy, config, uds=Path(tempfile.mkdtemp(prefix="bench-proxy-")) / "proxy.sock") as server:
        session = server.sessions.open("bench", max_calls=calls + 10)
        client = openai.OpenAI(base_url=server.session_url(session.token), api_key="unused", max_retries=0,
                               http_client=server.http_client())
        loop = asyncio.new_event_loop()
        for warm in conversations[:3]:  # compile / cache warm-up, not measured
            loop.run_until_complete(policy.generate(renderer.render(warm, None), sampling))
            client.chat.completions.create(model="policy", messages=warm, max_tokens=max_tokens)
        session.continuation = None
        for messages in conversations:
            ids = renderer.render(messages, None)
            started = time.perf_counter()
            completion = loop.run_until_complete(policy.generate(ids, sampling))
            direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.chat.completions.create(model="policy", messages=messages, max_tokens=max_tokens)
            proxied.append(time.perf_counter() - started)
            session.continuation = None  # every call a fresh conversation: same prompt as the direct call
            overhead.append(proxied[-1] - direct[-1])
            same += session.calls[-1].completion_ids == completion.token_ids
        loop.close()
    episode_table = episodes_table(engine, tokenizer, episodes) if episodes else None
    engine.close()
    table = Table(title=f"proxy overhead per model call ({backend} engine, tiny model, {calls} calls, "
                        f"{max_tokens} tokens greedy; identical completions {same}/{calls})")
    for column in ("path", "median ms", "p95 ms", "ratio to direct (median)"):
        table.add_column(column, justify="right" if column != "path" else "left")
    base = statistics.median(direct)
    table.add_row("direct engine call (baseline)", f"{base * 1e3:.1f}", f"{p95(direct) * 1e3:.1f}", "1.00")
    table.add_row("through the proxy (openai client, uds)", f"{statistics.median(proxied) * 1e3:.1f}",
                  f"{p95(proxied) * 1e3:.1f}", f"{statistics.median(proxied) / base:.2f}")
    table.add_row("overhead, paired (proxy - direct)", f"{statistics.median(overhead) * 1e3:.1f}",
                  f"{p95(overhead) * 1e3:.1f}", f"{statistics.median(overhead) / base:.2f}")
    Console().print(table)
    if episode_table is not None:
        Console().print(episode_table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=0, help="also time N whole episodes per agent (Docker)")
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the built-in tiny model); "
                                                      "an SFT checkpoint gives episodes that solve tasks")
    args = parser.parse_args()
    main(args.backend, args.calls, args.max_tokens, args.episodes, args.model)
