"""Rule-matching benchmark: the two default rules that backtracked (env-secret-grep, interpreter-socket-shell) on
hostile command lines, with Python's `re` (the engine the rules used before, as the baseline, same run) against
RE2 (what `rock.telemetry.rules` uses now), and every default rule on a 100 KB command with RE2.
Usage: python scripts/bench/bench_rules.py [--sizes 512,1024,2048]"""
from __future__ import annotations

import argparse
import re
import time

from rich.console import Console
from rich.table import Table

from rock.telemetry import load_rules
from rock.telemetry.command_text import command_observations
from rock.telemetry.detectors import apply_rules
from rock.telemetry.rules import search

HOSTILE = {  # rule: (its pattern before RE2, a hostile command of a given size)
    "env-secret-grep": (r"(?i)(printenv|\benv\b|\bset\b).*\|\s*grep.*(key|token|secret|passw)",
                        lambda size: ("env " * size)[: size // 2] + ("| grep " * size)[: size // 2]),
    "interpreter-socket-shell": (r"(?s)(socket|fsockopen|TCPSocket).*(dup2|/bin/(ba)?sh|pty\.spawn|subprocess)",
                                 lambda size: ("socket " * size)[:size]),
}


def timed(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1024,2048,4096")
    args = parser.parse_args()
    table = Table(title="rule matching: Python re (baseline) vs RE2, same input, same run")
    for column in ("rule", "command bytes", "re (s)", "RE2 (s)", "re / RE2"):
        table.add_column(column, justify="right")
    for rule, (pattern, make) in HOSTILE.items():
        for size in (int(s) for s in args.sizes.split(",")):
            command = make(size)
            baseline = timed(lambda pattern=pattern, command=command: re.search(pattern, command))
            linear = timed(lambda pattern=pattern, command=command: search(pattern, command))
            table.add_row(rule, str(size), f"{baseline:.4f}", f"{linear:.6f}", f"{baseline / max(linear, 1e-9):,.0f}x")
    rules = load_rules()
    for name, (_, make) in HOSTILE.items():
        command = make(100_000)
        total = timed(lambda command=command: [apply_rules(rules, obs)
                                               for obs in command_observations(command, "rock-bench", 0.0)])
        table.add_row(f"all {len(rules)} default rules ({name} input)", "100000", "-", f"{total:.4f}", "-")
    Console().print(table)


if __name__ == "__main__":
    main()
