"""Timeout kill benchmark: how long a timed-out command takes beyond its timeout in a rock session (freeze, kill
everything it started, thaw, read the marker), alone and with three sessions timing out at once, against `docker exec
… timeout -s KILL` (coreutils killing one process, no descendants) measured in the same run.
Usage: python scripts/bench/bench_kill.py [--repeats N]"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time

from rich.console import Console
from rich.table import Table

from rock import Sandbox, SandboxConfig

TIMEOUT = 0.5


def overhead_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000 - TIMEOUT * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    n = parser.parse_args().repeats
    with Sandbox(SandboxConfig()) as sandbox:
        alone, together, raw = [], [], []
        for _ in range(n):
            result = sandbox.run("sleep 30 & sleep 31", timeout=TIMEOUT)
            assert result.timed_out
            alone.append(result.duration)
        names = ["a", "b", "c"]
        for _ in range(n):
            durations: list[float] = []
            threads = [threading.Thread(target=lambda s=s: durations.append(
                sandbox.run("sleep 30 & sleep 31", timeout=TIMEOUT, session=s).duration)) for s in names]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            together.append(max(durations))
        for _ in range(n):
            start = time.perf_counter()
            subprocess.run(["docker", "exec", sandbox.name, "timeout", "-s", "KILL", str(TIMEOUT), "sleep", "31"])
            raw.append(time.perf_counter() - start)
    table = Table(title=f"Timed-out command: time beyond its {TIMEOUT:g} s timeout (medians of {n})")
    for column in ("measure", "rock (ms)", "baseline", "baseline (ms)", "ratio rock/baseline"):
        table.add_column(column)
    base = overhead_ms(raw)
    for name, samples in (("one session", alone), ("three sessions at once (slowest)", together)):
        ours = overhead_ms(samples)
        table.add_row(name, f"{ours:.0f}", "docker exec … timeout -s KILL", f"{base:.0f}", f"{ours / base:.2f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
