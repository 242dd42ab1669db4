"""SWE-bench harness benchmark: per-instance evaluation wall time of our harness vs the official `run_instance`
(swebench 5.x) on the same instance, image and prediction (gold), alternating the two, with both verdicts checked
equal. Needs Docker and the local-set images (`roll eval swebench-local build`).

    python scripts/bench/bench_swebench.py [--instances N] [--repeats R]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from roll.swebench.local.catalog import local_instances
from roll.swebench.local.images import build_images
from roll.swebench.official import official_test_spec
from roll.swebench.predictions import gold_predictions
from roll.swebench.runner import HarnessSettings, run_instance
from roll.swebench.specs import ImagePolicy


def ours(instance, prediction, root: Path, tag: str) -> tuple[float, bool]:
    settings = HarnessSettings(run_id=tag, log_root=root, timeout=600, images=ImagePolicy(namespace=None))
    start = time.perf_counter()
    result = run_instance(instance, prediction, settings)
    elapsed = time.perf_counter() - start
    if result.outcome == "error":
        raise RuntimeError(f"our harness failed on {instance.instance_id}: {result.error}")
    return elapsed, result.resolved


def official(instance, prediction, root: Path, tag: str) -> tuple[float, bool]:
    from swebench.harness.run_evaluation import run_instance as official_run_instance

    import docker

    spec = official_test_spec(instance, ImagePolicy(namespace=None))
    client = docker.from_env(timeout=600)
    cwd = os.getcwd()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the official harness writes logs/run_evaluation/ under the working directory
    try:
        start = time.perf_counter()
        result = official_run_instance(spec, prediction.model_dump(), client, tag, 600)
        elapsed = time.perf_counter() - start
    finally:
        os.chdir(cwd)
    if not result:
        raise RuntimeError(f"the official harness failed on {instance.instance_id}")
    return elapsed, bool(result[1][instance.instance_id]["resolved"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=4, help="local-set instances to time (one per package)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    console = Console()
    every = local_instances()
    chosen, repos = [], set()
    for instance in every:  # one per package first, for variety
        if instance.repo not in repos:
            chosen.append(instance)
            repos.add(instance.repo)
    chosen = chosen[: args.instances]
    build_images(chosen, log=lambda m: console.print(f"  {m}"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-swe-") as tmp:
        root = Path(tmp)
        for instance in chosen:
            prediction = gold_predictions([instance])[0]
            times = {"ours": [], "official": []}
            for repeat in range(args.repeats):
                for name, fn in (("ours", ours), ("official", official)):
                    elapsed, resolved = fn(instance, prediction, root / name, f"bench{repeat}")
                    if not resolved:
                        raise RuntimeError(f"{name} did not resolve {instance.instance_id} with the gold patch")
                    times[name].append(elapsed)
            mine, theirs = statistics.median(times["ours"]), statistics.median(times["official"])
            rows.append({"instance": instance.instance_id, "ours_s": round(mine, 2), "official_s": round(theirs, 2),
                         "ratio": round(mine / theirs, 3)})
    table = Table(title="SWE-bench per-instance evaluation wall time (gold patch, same image; median)")
    for column in ("instance", "ours (s)", "official run_instance (s)", "ours / official"):
        table.add_column(column, justify="left" if column == "instance" else "right")
    for row in rows:
        table.add_row(row["instance"], f"{row['ours_s']:.2f}", f"{row['official_s']:.2f}", f"{row['ratio']:.2f}x")
    total_ours = sum(r["ours_s"] for r in rows)
    total_theirs = sum(r["official_s"] for r in rows)
    table.add_row("total", f"{total_ours:.2f}", f"{total_theirs:.2f}", f"{total_ours / total_theirs:.2f}x")
    console.print(table)
    console.print("goal: <= 1.00x (the official harness stops each container with `docker stop --time=15`)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
