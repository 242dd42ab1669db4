"""File tools in a sandbox: the agent's reads and writes as the sandbox user over the tools session (base64 in
bounded chunks, `iflow.backends.session_files`) against the baseline, dockerd's archive API as root (what they
used before; still what host-side transfers use), measured in the same run on the same sandbox.

    .venv/bin/python scripts/bench/bench_file_tools.py [--repeats 5]

Each figure is the median of `--repeats` transfers of a file: `text` is Python source (this repository's files,
repeated to the size; writes are gzipped on the way, so it is the common case), `random` is incompressible bytes.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from iflow.backends import RockBackend
from rock import AsyncSandbox, SandboxConfig

SIZES = [("4 KiB", 4 * 1024), ("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024), ("4 MiB", 4 * 1024 * 1024)]
SOURCE = b"".join(path.read_bytes() for path in sorted((ROOT / "iflow").rglob("*.py")))


def payload(kind: str, size: int) -> bytes:
    if kind == "random":
        return os.urandom(size)
    return (SOURCE * (size // len(SOURCE) + 1))[:size]


async def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(repeats: int) -> None:
    rows = []
    async with AsyncSandbox(SandboxConfig(command_timeout=120)) as sandbox:
        backend = RockBackend(sandbox)
        for (label, size), kind in [(entry, kind) for kind in ("text", "random") for entry in SIZES]:
            data = payload(kind, size)
            path = f"/workspace/bench-{kind}-{size}.bin"
            await sandbox.write_file(path, data)
            assert await backend.read_file(path) == data
            session_read = await median_seconds(lambda path=path: backend.read_file(path), repeats)
            archive_read = await median_seconds(lambda path=path: sandbox.read_file(path), repeats)
            session_write = await median_seconds(lambda path=path, data=data: backend.write_file(path, data), repeats)
            archive_write = await median_seconds(lambda path=path, data=data: sandbox.write_file(path, data), repeats)
            rows.append((f"{label} {kind}", session_read, archive_read, session_write, archive_write))
    print("| file | read: session (ms) | read: archive API, baseline (ms) | ratio | write: session (ms) "
          "| write: archive API, baseline (ms) | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, session_read, archive_read, session_write, archive_write in rows:
        print(f"| {label} | {session_read * 1e3:.1f} | {archive_read * 1e3:.1f} | {session_read / archive_read:.2f}x "
              f"| {session_write * 1e3:.1f} | {archive_write * 1e3:.1f} | {session_write / archive_write:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeats))
