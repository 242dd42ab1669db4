import http.server
import threading

import pytest

from rock import Sandbox, SandboxConfig
from rock.egress import allowed
from rock.telemetry import SandboxMonitor

pytestmark = pytest.mark.docker


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
