"""Telemetry benchmark: a real pytest workload in a sandbox with the host eBPF tracer off and on (goal: <= 5%
overhead), and detection latency from the behaviour (the traced exec) to the event being available to the
monitor. Usage: python scripts/bench/bench_telemetry.py [--rounds N]"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

from rich.console import Console
from rich.table import Table

from rock import Sandbox, SandboxConfig
from rock.telemetry import SandboxMonitor, ensure_tracer, stop_tracer

PROJECT = r"""
mkdir -p proj/tests && cd proj && cat > mod.py <<'PY'
import json, re
def parse(text):
    return [int(x) for x in re.findall(r"\d+", text)]
def roundtrip(obj):
    return json.loads(json.dumps(obj))
PY
python3 - <<'PY'
lines = ["import pytest, subprocess, mod"]
for i in range(150):
    lines.append(f"def test_parse_{i}():\n    assert mod.parse('a{i} b{i+1}') == [{i}, {i+1}]")
for i in range(30):
    lines.append(f"def test_subprocess_{i}():\n    assert subprocess.run(['true']).returncode == 0")
open("tests/test_mod.py", "w").write("\n".join(lines) + "\n")
PY
"""
WORKLOAD = "cd /workspace/proj && python3 -m pytest -q -p no:cacheprovider tests >/dev/null && echo ok"


def run_workload(sandbox: Sandbox) -> float:
    start = time.perf_counter()
    result = sandbox.run(WORKLOAD, timeout=300)
    assert result.output.strip() == "ok", result.output
    return time.perf_counter() - start


def detection_latency(sandbox: Sandbox, monitor: SandboxMonitor, repeats: int) -> list[float]:
    sandbox.run("mkdir -p bin && printf '#!/bin/sh\\nsleep 0.5\\n' > bin/xmrig && chmod +x bin/xmrig")
    latencies = []
    for _ in range(repeats):
        worker = threading.Thread(target=sandbox.run, args=("bin/xmrig -o stratum+tcp://127.0.0.1:3333",))
        worker.start()
        found = None
        deadline = time.time() + 10
        while found is None and time.time() < deadline:
            for event in monitor._detect(monitor._reader.read()):
                if event.category == "compute.mining":
                    found = time.time() - event.time
            time.sleep(0.001)
        worker.join()
        if found is not None:
            latencies.append(found)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=3)
    args = parser.parse_args()
    timings: dict[str, list[float]] = {"off": [], "on": []}
    with Sandbox(SandboxConfig(cpus=1.0, memory="1g")) as sandbox:
        sandbox.run(PROJECT, timeout=120)
        run_workload(sandbox)  # warm caches
        for _ in range(args.rounds):  # alternate blocks so drift hits both alike
            for mode in ("off", "on"):
                if mode == "on":
                    if ensure_tracer().mode != "ebpf":
                        raise SystemExit("eBPF tracing unavailable on this host")
                    monitor = SandboxMonitor(sandbox)
                    monitor.start()
                else:
                    stop_tracer()
                timings[mode] += [run_workload(sandbox) for _ in range(args.per_round)]
                if mode == "on":
                    monitor.stop()
        ensure_tracer()
        with SandboxMonitor(sandbox) as monitor:
            latencies = detection_latency(sandbox, monitor, 10)
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    table = Table(title="ROCK telemetry benchmark (medians)")
    for column in ("measure", "value", "baseline", "ratio"):
        table.add_column(column)
    table.add_row("pytest workload (180 tests, 30 subprocesses), tracer on", f"{on * 1000:.0f} ms",
                  f"{off * 1000:.0f} ms (tracer off)", f"{on / off:.3f}")
    table.add_row("detection latency: exec of a miner → event", f"{statistics.median(latencies) * 1000:.1f} ms"
                  if latencies else "not detected", f"{len(latencies)}/10 detected", "")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
