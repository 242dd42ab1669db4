"""Stop-critical benchmark: a miner-like process (a busy loop exec'd with a stratum URL argument, loopback only, in a
sandbox with no network) is killed by the monitor's spool watcher. Latency is measured from the exec (the eBPF
event's kernel time) to the return of the kill, over N tries; the baseline, measured in the same run, is the same
command under the turn-end policy only (stop_critical off), where the miner runs for the whole command.
Usage: python scripts/bench/bench_stop_critical.py [--tries 20] [--baseline-tries 3] [--busy 5]"""
from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from rock import Sandbox, SandboxConfig
from rock.telemetry import SandboxMonitor


def miner(busy: float) -> str:
    return (f"python3 -c 'import time\nt = time.time()\nwhile time.time() - t < {busy}: pass' "
            "-o stratum+tcp://127.0.0.1:3333")


def run_tries(tries: int, busy: float, stop_critical: bool) -> tuple[list[float], list[float], int]:
    """(exec->kill latencies, command wall times, commands stopped) over `tries` runs."""
    latencies, walls, stopped = [], [], 0
    with Sandbox(SandboxConfig(command_timeout=busy + 20)) as sandbox:
        interfaces = sandbox.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").output.split()
        assert interfaces == ["lo"], "the miner-like command runs only in a sandbox with no network"
        monitor = SandboxMonitor(sandbox, stop_critical=stop_critical)
        status = monitor.start()
        assert status.mode == "ebpf", f"needs the eBPF tracer: {status.reason}"
        try:
            for n in range(tries):
                sandbox.audit.set_tags(turn=n)
                result = sandbox.run(miner(busy))
                walls.append(result.duration)
                time.sleep(0.2)
                events = [e for e in monitor.poll(final=True) if e.category == "compute.mining"]
                marks = [e.detail["stop_latency_s"] for e in events if e.detail.get("stopped_command")]
                if marks:
                    stopped += 1
                    latencies.append(min(marks))
        finally:
            monitor.stop()
    return latencies, walls, stopped


def ms(values: list[float], how) -> str:
    return f"{how(values) * 1000:.1f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--baseline-tries", type=int, default=3)
    parser.add_argument("--busy", type=float, default=5.0, help="seconds the miner-like loop runs if not stopped")
    args = parser.parse_args()
    latencies, walls, stopped = run_tries(args.tries, args.busy, stop_critical=True)
    _, base_walls, base_stopped = run_tries(args.baseline_tries, args.busy, stop_critical=False)
    table = Table(title=f"Miner-like exec -> command killed ({args.busy:g} s busy loop + stratum URL)")
    for column in ("policy", "tries", "stopped", "exec->kill median ms", "exec->kill max ms",
                   "command wall median ms", "command wall max ms", "wall vs baseline"):
        table.add_column(column, justify="right")
    base = statistics.median(base_walls)
    table.add_row("stop critical (watcher)", str(args.tries), str(stopped), ms(latencies, statistics.median),
                  ms(latencies, max), ms(walls, statistics.median), ms(walls, max),
                  f"{statistics.median(walls) / base:.3f}x")
    table.add_row("baseline: turn-end only", str(args.baseline_tries), str(base_stopped), "-", "-",
                  ms(base_walls, statistics.median), ms(base_walls, max), "1.000x")
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
