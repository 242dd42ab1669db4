"""User-space monitor overhead: the pytest workload of bench_telemetry.py in one sandbox with no SandboxMonitor
(baseline) and with one (sampler thread, per-process CPU census, command-text rules, survivors, one file check per
command), alternating blocks in the same run. The host tracer is left as it is (running or not) in both modes:
stopping it would blind whatever else this host runs. Usage: python scripts/bench/bench_monitor.py [--rounds N]"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_telemetry import PROJECT, run_workload  # noqa: E402 - the same workload as the tracer benchmark

from rock import Sandbox, SandboxConfig  # noqa: E402
from rock.telemetry import SandboxMonitor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=2)
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"off": [], "on": []}
    with Sandbox(SandboxConfig(cpus=1.0, memory="1g")) as sandbox:
        sandbox.run(PROJECT, timeout=120)
        run_workload(sandbox)  # warm caches
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                monitor = SandboxMonitor(sandbox, protected=["proj/tests"]) if mode == "on" else None
                if monitor is not None:
                    monitor.start()
                for _ in range(args.per_round):
                    timings[mode].append(run_workload(sandbox))
                    if monitor is not None:
                        monitor.check_integrity()
                        monitor.poll(final=True)
                if monitor is not None:
                    monitor.stop()
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    table = Table(title="SandboxMonitor overhead (medians; the file check and poll are timed outside the workload)")
    for column in ("measure", "value", "baseline", "ratio"):
        table.add_column(column)
    table.add_row("pytest workload (180 tests, 30 subprocesses), monitor on", f"{on * 1000:.0f} ms",
                  f"{off * 1000:.0f} ms (no monitor)", f"{on / off:.3f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
