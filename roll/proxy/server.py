"""Run the proxy app with uvicorn in a thread of its own (its own event loop), on a unix socket or a loopback port.

    server = ProxyServer(policy, ProxyConfig(), uds="/run/roll-proxy/proxy.sock").start()
    session = server.sessions.open("episode-7")      # session.token goes into the agent's base URL / API key
    ...
    calls = server.sessions.close(session.token).calls
    server.stop()
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from roll.proxy.app import create_app
from roll.proxy.config import ProxyConfig
from roll.proxy.service import ProxyService
from roll.proxy.sessions import SessionRegistry

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ProxyServer:
    def __init__(self, policy: Any, config: ProxyConfig | None = None, *, uds: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0, socket_mode: int = 0o666, tokenizer: Any = None) -> None:
        if uds is None and host not in LOOPBACK:
            raise ValueError(f"the proxy listens on a unix socket or loopback only, not {host!r}")
        self.config = config or ProxyConfig()
        self.service = ProxyService(policy, self.config, tokenizer)
        self.sessions = SessionRegistry(self.config.max_concurrent_per_session, self.config.max_concurrent_total,
                                        self.config.max_calls_per_session)
        self.app = create_app(self.service, self.sessions)
        self.uds = str(uds) if uds is not None else None
        self.host, self.port = host, port
        self.socket_mode = socket_mode  # sessions are authenticated by their secret token, not by who connects
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """Base URL of the OpenAI API (without a session segment). Over a unix socket the host is nominal."""
        return "http://proxy/v1" if self.uds else f"http://{self.host}:{self.port}/v1"

    def session_url(self, token: str) -> str:
        return self.base_url.replace("/v1", f"/s/{token}/v1")

    def http_client(self, timeout: float = 120.0) -> httpx.Client:
        """An httpx client that reaches this server (over its unix socket, if it has one)."""
        transport = httpx.HTTPTransport(uds=self.uds) if self.uds else None
        return httpx.Client(transport=transport, timeout=timeout)

    def async_http_client(self, timeout: float = 120.0) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=self.uds) if self.uds else None
        return httpx.AsyncClient(transport=transport, timeout=timeout)

    def start(self, timeout: float = 30.0) -> ProxyServer:
        if self.uds:
            Path(self.uds).parent.mkdir(parents=True, exist_ok=True)
            Path(self.uds).unlink(missing_ok=True)
        config = uvicorn.Config(self.app, uds=self.uds, host=self.host, port=self.port, log_level="warning",
                                access_log=False, lifespan="off", timeout_keep_alive=30,
                                limit_concurrency=self.config.max_concurrent_total * 2 + 16)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="roll-proxy", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the model proxy did not start")
            time.sleep(0.02)
        if self.uds:
            os.chmod(self.uds, self.socket_mode)
        elif self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._server.serve())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.uds:
            Path(self.uds).unlink(missing_ok=True)

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
