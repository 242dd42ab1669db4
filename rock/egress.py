"""Optional egress allowlist. A sandbox keeps `network_mode=none`; it reaches the outside only through a proxy run by
rock on the host, over a unix socket mounted into the container (no routable address is ever given). Inside, a tiny
shim listens on 127.0.0.1:3128 and forwards to that socket, and HTTP(S)_PROXY point at the shim. The proxy admits
listed hosts (HTTP CONNECT tunnels and plain-HTTP requests) and logs every request, admitted or refused."""
from __future__ import annotations

import asyncio
import fnmatch
import os
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

SOCKET_DIR_IN_SANDBOX = "/run/rock-egress"
SHIM_PORT = 3128
SHIM = f"""
import socket, threading
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", {SHIM_PORT})); server.listen(64)
def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
def serve(client):
    upstream = socket.socket(socket.AF_UNIX); upstream.connect("{SOCKET_DIR_IN_SANDBOX}/proxy.sock")
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start(); pump(upstream, client)
while True:
    conn, _ = server.accept(); threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class EgressRequest(BaseModel):
    time: float
    sandbox: str
    method: str
    host: str
    port: int
    admitted: bool
    reason: str = ""


def allowed(host: str, port: int, allow: list[str]) -> bool:
    """Entries are `host`, `host:port`, or shell patterns such as `*.example.org`."""
    for entry in allow:
        pattern, _, want_port = entry.partition(":")
        if fnmatch.fnmatch(host.lower(), pattern.lower()) and (not want_port or int(want_port) == port):
            return True
    return False


class EgressProxy:
    """One proxy per sandbox (so every request is attributable), served from a background thread."""

    def __init__(self, sandbox: str, allow: list[str], connect_timeout: float = 10.0) -> None:
        self.sandbox, self.allow, self.connect_timeout = sandbox, list(allow), connect_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="rock-egress-"))
        os.chmod(self.directory, 0o755)
        self.socket_path = self.directory / "proxy.sock"
        self.requests: list[EgressRequest] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"egress-{sandbox}", daemon=True)

    def start(self) -> "EgressProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("egress proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_unix_server(self._handle, path=str(self.socket_path)))
        os.chmod(self.socket_path, 0o666)
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _log(self, method: str, host: str, port: int, admitted: bool, reason: str = "") -> None:
        self.requests.append(EgressRequest(time=time.time(), sandbox=self.sandbox, method=method, host=host,
                                           port=port, admitted=admitted, reason=reason))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = request_line.decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                host, _, port_text = target.rpartition(":")
                port = int(port_text)
                forward = b""
            else:
                url = urlsplit(target)
                host, port = url.hostname or "", url.port or 80
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                forward = f"{method} {path} {version}\r\n".encode("latin-1") + rest
        except ValueError:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if not allowed(host, port, self.allow):
            self._log(method, host, port, False, "not on the allowlist")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\n"
                         b"blocked by rock egress list")
            await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._log(method, host, port, True, f"upstream unreachable: {exc}")
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        self._log(method, host, port, True)
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            up_writer.write(forward)
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except RuntimeError:
            pass
