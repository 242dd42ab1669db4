"""Shared test helpers: the test server's credentials, a free loopback port, git in a test repository."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

API_KEY = "test-key-123"
SERVED_NAME = "tiny"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout
