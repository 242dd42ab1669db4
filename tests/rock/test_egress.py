import http.server
import os
import socket
import stat
import subprocess
import threading
import time

import pytest

from rock import Sandbox, SandboxConfig
from rock.egress import EgressProxy, allowed
from rock.telemetry import SandboxMonitor


def test_allowlist_patterns():
    allow = ["pypi.org", "*.pythonhosted.org", "127.0.0.1:8080"]
    assert allowed("pypi.org", 443, allow) and allowed("files.pythonhosted.org", 443, allow)
    assert allowed("127.0.0.1", 8080, allow) and not allowed("127.0.0.1", 8081, allow)
    assert not allowed("evil.example", 443, allow) and not allowed("pypi.org.evil.example", 443, allow)


@pytest.fixture
def upstream():
    """A web server on the host's loopback, standing in for an allowed package index."""
    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from upstream"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def counting_upstream():
    """A keep-alive HTTP/1.1 server on the host's loopback that records every path it is asked for."""
    seen = []

    class Counting(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()


def proxy_for(*allow, **options):
    return EgressProxy("rock-test", list(allow), **options).start()


def unix_client(proxy, timeout=5.0):
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(timeout)
    client.connect(str(proxy.socket_path))
    return client


def read_all(client):
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    return data


def test_a_second_request_on_a_keep_alive_connection_is_checked_not_forwarded(counting_upstream):
    port, seen = counting_upstream
    proxy = proxy_for(f"127.0.0.1:{port}")
    try:
        client = unix_client(proxy)
        client.sendall(f"GET http://127.0.0.1:{port}/allowed HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                       f"GET http://evil.invalid/smuggled HTTP/1.1\r\nHost: evil.invalid\r\n\r\n".encode())
        reply = read_all(client)
        client.close()
        time.sleep(0.3)
    finally:
        proxy.stop()
    assert reply.startswith(b"HTTP/1.1 200") and reply.count(b"HTTP/1.1 200") == 1
    assert seen == ["/allowed"]
    assert [(r.host, r.admitted) for r in proxy.requests] == [("127.0.0.1", True), ("evil.invalid", False)]


def test_an_idle_tunnel_is_closed():
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    proxy = proxy_for(f"127.0.0.1:{port}", idle_timeout=0.5)
    try:
        client = unix_client(proxy, timeout=5.0)
        client.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        began = time.monotonic()
        reply = read_all(client)  # returns once the proxy closes the idle tunnel
        assert reply.startswith(b"HTTP/1.1 200") and time.monotonic() - began < 4.0
    finally:
        proxy.stop()
        silent.close()


def test_connections_beyond_the_cap_are_refused():
    proxy = proxy_for("127.0.0.1:1", max_connections=2)
    try:
        held = [unix_client(proxy) for _ in range(2)]  # each waits for its request head
        time.sleep(0.2)
        extra = unix_client(proxy)
        assert read_all(extra).startswith(b"HTTP/1.1 503")
        for client in held:
            client.close()
    finally:
        proxy.stop()
    assert any("cap" in r.reason for r in proxy.requests)


def test_the_socket_admits_only_the_granted_user():
    proxy = proxy_for("127.0.0.1:1")
    try:
        mode = stat.S_IMODE(os.stat(proxy.socket_path).st_mode)
        assert mode & 0o077 == 0
        proxy.grant(12345, 12345)
        assert (os.stat(proxy.socket_path).st_uid, stat.S_IMODE(os.stat(proxy.socket_path).st_mode)) == (12345, 0o600)
        attempt = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\n"
                   "    print('connected')\nexcept PermissionError:\n    print('denied')")
        other_user = subprocess.run(["/usr/bin/python3", "-c", attempt, str(proxy.socket_path)], capture_output=True,
                                    text=True, user=65534, group=65534, timeout=30, check=False)
        assert other_user.stdout.strip() == "denied", other_user.stderr
    finally:
        proxy.stop()


@pytest.mark.docker
def test_sandbox_reaches_only_listed_hosts_through_the_logging_proxy(docker_engine, upstream):
    config = SandboxConfig(egress_allow=[f"127.0.0.1:{upstream}"])
    with Sandbox(config) as sb:
        assert sb.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").output.split() == ["lo"]
        monitor = SandboxMonitor(sb)
        monitor.start()
        try:
            fetch = ("python3 -c \"import sys, urllib.request\ntry: print(urllib.request.urlopen(sys.argv[1], "
                     "timeout=10).read().decode())\nexcept Exception as e: print('refused', e)\" ")
            sb.audit.set_tags(turn=1)
            ok = sb.run(fetch + f"http://127.0.0.1:{upstream}/simple/")
            sb.audit.set_tags(turn=2)
            blocked = sb.run(fetch + "http://example.invalid/")
            events = monitor.poll(final=True)
        finally:
            monitor.stop()
        assert ok.output.strip() == "hello from upstream"
        assert "refused" in blocked.output and "403" in blocked.output
        log = [(r.host, r.admitted) for r in sb.egress.requests]
        assert log == [("127.0.0.1", True), ("example.invalid", False)]
        refused = [e for e in events if e.rule == "proxy-refused"]
        assert len(refused) == 1 and refused[0].turn == 2 and refused[0].detail["host"] == "example.invalid"
