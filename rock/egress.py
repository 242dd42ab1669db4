"""Optional egress allowlist. A sandbox keeps `network_mode=none`; it reaches the outside only through a proxy run by
rock on the host, over a unix socket mounted into the container (no routable address is ever given). Inside, a tiny
shim listens on 127.0.0.1:3128 and forwards to that socket, and HTTP(S)_PROXY point at the shim. The proxy admits
listed hosts (HTTP CONNECT tunnels and plain-HTTP requests) and logs every request, admitted or refused.

Every plain-HTTP request is checked: a connection carries one request (forwarded with `Connection: close` and its
declared body only); anything the client sends after it is logged as refused and never forwarded. Connections are
capped in number and closed when idle; the socket is readable and writable by the sandbox user only (`grant`)."""
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

from rock.loopback_shim import shim_source

SOCKET_DIR_IN_SANDBOX = "/run/rock-egress"
SHIM_PORT = 3128
SHIM = shim_source(SHIM_PORT, f"{SOCKET_DIR_IN_SANDBOX}/proxy.sock")


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

    def __init__(self, sandbox: str, allow: list[str], connect_timeout: float = 10.0, idle_timeout: float = 60.0,
                 max_connections: int = 32, head_timeout: float = 30.0) -> None:
        self.sandbox, self.allow, self.connect_timeout = sandbox, list(allow), connect_timeout
        self.idle_timeout, self.max_connections, self.head_timeout = idle_timeout, max_connections, head_timeout
        self.directory = Path(tempfile.mkdtemp(prefix="rock-egress-"))
        os.chmod(self.directory, 0o755)
        self.socket_path = self.directory / "proxy.sock"
        self.requests: list[EgressRequest] = []
        self.active = 0
        self._clients: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"egress-{sandbox}", daemon=True)

    def start(self) -> EgressProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("egress proxy did not start")
        return self

    def grant(self, uid: int, gid: int) -> None:
        """Let the sandbox user (and only it, besides root) connect."""
        os.chown(self.socket_path, uid, gid)
        os.chmod(self.socket_path, 0o600)

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            pass

    async def _shutdown(self) -> None:
        """Close every open connection (cancel its task and let it finish), then stop the loop."""
        for writer in list(self._clients):
            _close(writer)  # each handler sees its client gone and ends by itself
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=2)
            for task in stuck:
                task.cancel()
        self._loop.stop()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window in which anyone may connect
        try:
            server = self._loop.run_until_complete(asyncio.start_unix_server(self._handle,
                                                                             path=str(self.socket_path)))
        finally:
            os.umask(old_umask)
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _log(self, method: str, host: str, port: int, admitted: bool, reason: str = "") -> None:
        self.requests.append(EgressRequest(time=time.time(), sandbox=self.sandbox, method=method, host=host,
                                           port=port, admitted=admitted, reason=reason))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.active >= self.max_connections:
            self._log("-", "", 0, False, f"over the cap of {self.max_connections} connections")
            await _reply(writer, b"503 Service Unavailable", b"too many connections")
            return
        self.active += 1
        self._clients.add(writer)
        try:
            await self._serve_connection(reader, writer)
        finally:
            self.active -= 1
            self._clients.discard(writer)
            _close(writer)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader, self.head_timeout)
        if request is None:
            return
        method, host, port, forward, length = request
        if not host or not allowed(host, port, self.allow):
            self._log(method, host, port, False, "not on the allowlist" if host else "bad request")
            await _reply(writer, b"403 Forbidden", b"blocked by rock egress list")
            return
        if length is None:
            self._log(method, host, port, False, "request body without Content-Length")
            await _reply(writer, b"411 Length Required", b"")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._log(method, host, port, True, f"upstream unreachable: {exc}")
            await _reply(writer, b"502 Bad Gateway", b"")
            return
        self._log(method, host, port, True)
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await _relay([(reader, up_writer), (up_reader, writer)], self.idle_timeout)
                return
            up_writer.write(forward)
            if length:
                up_writer.write(await asyncio.wait_for(reader.readexactly(length), self.idle_timeout))
            await up_writer.drain()
            await _relay([(up_reader, writer)], self.idle_timeout)
        except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return
        finally:
            _close(up_writer)
        await self._refuse_rest(reader)

    async def _refuse_rest(self, reader: asyncio.StreamReader) -> None:
        """A second request on the connection is never forwarded: log what it asked for."""
        request = await _read_request(reader, 0.2)
        if request is not None:
            method, host, port = request[:3]
            self._log(method, host, port, False, "second request on one connection")


async def _read_request(reader: asyncio.StreamReader,
                        timeout: float) -> tuple[str, str, int, bytes, int | None] | None:
    """(method, host, port, the head to forward, body length or None when it cannot be known), or None when the
    client sent nothing usable. `host` is empty for a request that cannot be parsed."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    request_line, _, rest = head.partition(b"\r\n")
    try:
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            return method, host.strip("[]"), int(port_text), b"", 0
        url = urlsplit(target)
        host, port = url.hostname or "", url.port or 80
    except ValueError:
        return "-", "", 0, b"", 0
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers, length = [], 0
    for line in rest.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if not name or key in ("connection", "proxy-connection", "keep-alive"):
            continue
        if key == "transfer-encoding":
            length = None
        elif key == "content-length" and length is not None:
            length = int(value.strip()) if value.strip().isdigit() else None
        headers.append(line)
    forward = f"{method} {path} {version}\r\n" + "".join(f"{h}\r\n" for h in headers) + "Connection: close\r\n\r\n"
    return method, host, port, forward.encode("latin-1"), length


async def _reply(writer: asyncio.StreamWriter, status: bytes, body: bytes) -> None:
    try:
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
    except ConnectionError:
        pass
    _close(writer)


def _close(writer: asyncio.StreamWriter) -> None:
    try:
        writer.close()
    except RuntimeError:
        pass


async def _relay(pairs: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], idle: float) -> None:
    """Copy each reader to its writer until one side ends or nothing moves either way for `idle` seconds."""
    loop = asyncio.get_running_loop()
    last = [loop.time()]

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                last[0] = loop.time()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass

    tasks = [asyncio.ensure_future(pump(r, w)) for r, w in pairs]
    try:
        while True:
            done, _ = await asyncio.wait(tasks, timeout=max(0.05, idle / 4), return_when=asyncio.FIRST_COMPLETED)
            if done or loop.time() - last[0] > idle:
                return
    finally:
        for task in tasks:
            task.cancel()
        for _, writer in pairs:
            _close(writer)
