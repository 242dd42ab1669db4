"""Reaching the proxy from a sandbox that has no network: the proxy's unix socket directory is bind-mounted into
the container (read-only), and a tiny shim inside listens on 127.0.0.1:<port> and forwards every connection to the
socket. The agent gets OPENAI_BASE_URL=http://127.0.0.1:<port>/s/<session token>/v1; the sandbox keeps
network_mode none (no routable address exists inside it)."""
from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

from rock.loopback_shim import shim_source
from roll.proxy.config import SHIM_PORT

SOCKET_DIR_IN_SANDBOX = "/run/roll-proxy"
SOCKET_NAME = "proxy.sock"
SHIM_PATH = "/tmp/roll-proxy-shim.py"
SHIM_SESSION = "roll-proxy-shim"

SHIM_SOURCE = "import sys\n" + shim_source("int(sys.argv[1])", f"{SOCKET_DIR_IN_SANDBOX}/{SOCKET_NAME}", backlog=128)


def proxy_volumes(socket_path: str | Path) -> dict[str, dict[str, str]]:
    """The docker volumes entry that mounts the proxy socket's directory into a sandbox (merge into
    SandboxConfig.volumes). The directory must hold nothing but the socket."""
    return {str(Path(socket_path).parent): {"bind": SOCKET_DIR_IN_SANDBOX, "mode": "ro"}}


def agent_env(token: str, port: int = SHIM_PORT, model: str = "policy") -> dict[str, str]:
    """What an OpenAI-style agent inside the sandbox needs to reach its session."""
    base = f"http://127.0.0.1:{port}/s/{token}/v1"
    return {"OPENAI_BASE_URL": base, "OPENAI_API_BASE": base, "OPENAI_API_KEY": token, "OPENAI_MODEL": model,
            "IFLOW_BASE_URL": base, "IFLOW_API_KEY": token, "IFLOW_MODEL": model}


async def install_shim(sandbox: Any) -> None:
    """Write the shim into the sandbox. Raises RuntimeError when the proxy socket is not mounted (fail closed)."""
    code, _ = await sandbox.exec(["test", "-S", f"{SOCKET_DIR_IN_SANDBOX}/{SOCKET_NAME}"])
    if code != 0:
        raise RuntimeError(f"the proxy socket is not mounted at {SOCKET_DIR_IN_SANDBOX} in sandbox {sandbox.name}")
    await sandbox.write_file(SHIM_PATH, SHIM_SOURCE, mode=0o644)


def _probe(port: int) -> str:
    return f"import socket; socket.create_connection(('127.0.0.1', {int(port)}), 1).close()"


def with_shim(command: str, port: int = SHIM_PORT) -> str:
    """A shell command that runs the shim for exactly as long as `command`: started first (and waited for), then
    `command`, then the shim (this shell's own child) is stopped; the exit status is the command's. Nothing is
    left running in the sandbox afterwards (no survivor for the safety monitor to report)."""
    probe = shlex.quote(_probe(port))
    script = (f"python3 {SHIM_PATH} {int(port)} & shim=$!; "
              f"for _ in $(seq 100); do python3 -c {probe} 2>/dev/null && break; sleep 0.05; done; "
              f"{command}; status=$?; kill $shim 2>/dev/null; wait $shim 2>/dev/null; exit $status")
    return f"bash -c {shlex.quote(script)}"


async def start_shim(sandbox: Any, port: int = SHIM_PORT, timeout: float = 10.0) -> None:
    """Install the shim and leave it running in the background (for a sandbox used by hand); returns once it
    accepts connections. Raises RuntimeError when it does not come up (fail closed)."""
    await install_shim(sandbox)
    await sandbox.run(f"nohup python3 {SHIM_PATH} {int(port)} >/dev/null 2>&1 &", timeout=10, session=SHIM_SESSION)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await sandbox.exec(["python3", "-c", _probe(port)], timeout=5))[0] == 0:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the proxy shim did not come up in sandbox {sandbox.name}")


def new_socket_path(prefix: str = "roll-proxy-") -> Path:
    """A fresh directory for one proxy socket, traversable by the sandbox user (the socket itself is 0666:
    sessions are authenticated by their secret tokens)."""
    import os
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(directory, 0o755)
    return directory / SOCKET_NAME
