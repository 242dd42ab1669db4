"""ROCK benchmark: sandbox session latency, start time, pool acquire and 32 concurrent sandboxes, each against the
raw Docker baseline measured in the same run. Usage: python scripts/bench/bench_rock.py [--repeats N]"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time

from rich.console import Console
from rich.table import Table

from rock import DEFAULT_IMAGE, AsyncSandbox, Sandbox, SandboxConfig, SandboxPool
from rock.engine import client


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=32)
    args = parser.parse_args()
    n = args.repeats
    rows = []

    with Sandbox() as sb:
        sb.run("true")
        session = timed(lambda: sb.run("true"), n)
        raw_exec = timed(lambda: subprocess.run(["docker", "exec", sb.name, "true"], check=True), n)
        container = client().containers.get(sb.id)
        sdk_exec = timed(lambda: container.exec_run("true"), n)
    rows.append(("command `true`: rock session", median_ms(session), "raw `docker exec`", median_ms(raw_exec)))
    rows.append(("command `true`: rock session", median_ms(session), "SDK exec_run", median_ms(sdk_exec)))

    def start_sandbox() -> None:
        s = Sandbox().start()
        s.run("true")
        s.stop()

    starts = timed(start_sandbox, max(5, n // 3))
    raw_run = timed(lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE, "true"],
                                           check=True), max(5, n // 3))
    rows.append(("start → first command → removed", median_ms(starts), "raw `docker run --rm … true`",
                 median_ms(raw_run)))

    with SandboxPool(SandboxConfig(), size=2) as pool:
        acquires = []
        for _ in range(max(5, n // 3)):
            pool.wait_ready(timeout=120)
            start = time.perf_counter()
            sandbox = pool.acquire()
            acquires.append(time.perf_counter() - start)
            pool.release(sandbox)
    rows.append(("warm pool acquire", median_ms(acquires), "goal", 50.0))

    async def concurrent() -> tuple[int, float]:
        async def one(i: int) -> bool:
            try:
                async with AsyncSandbox(SandboxConfig(cpus=0.25, memory="128m")) as s:
                    return (await s.run(f"echo {i}")).output == f"{i}\n"
            except Exception:  # noqa: BLE001 - a failure is counted, not raised
                return False
        start = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(args.concurrent)))
        return sum(results), time.perf_counter() - start

    ok, wall = asyncio.run(concurrent())

    table = Table(title="ROCK sandbox benchmark (medians)")
    for column in ("measure", "rock (ms)", "baseline", "baseline (ms)", "ratio rock/baseline"):
        table.add_column(column)
    for name, ours, base_name, base in rows:
        table.add_row(name, f"{ours:.2f}", base_name, f"{base:.2f}", f"{ours / base:.3f}")
    table.add_row(f"{args.concurrent} concurrent sandboxes (start, run, remove)", f"{wall * 1000:.0f} wall",
                  "successes", f"{ok}/{args.concurrent}", "")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
