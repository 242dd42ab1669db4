"""Nothing leaks from a failed start or a quarantine, and the pool stays at its size after either."""
import threading

import pytest

from rock import Sandbox, SandboxConfig, SandboxPool
from rock.sandbox import SandboxError

pytestmark = pytest.mark.docker


def _proxy_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"egress-{name}" and t.is_alive()]


def test_a_failed_start_stops_its_egress_proxy(docker_engine):
    sandbox = Sandbox(SandboxConfig(image="rock-no-such-image:0", egress_allow=["pypi.org"]))
    with pytest.raises(SandboxError, match="not found"):
        sandbox.start()
    assert _proxy_threads(sandbox.name) == [] and sandbox.egress is None


def test_quarantine_stops_the_egress_proxy_and_keeps_the_container(docker_engine):
    sandbox = Sandbox(SandboxConfig(egress_allow=["pypi.org"])).start()
    name, directory = sandbox.name, sandbox.egress.directory
    assert _proxy_threads(name)
    kept = sandbox.quarantine()
    try:
        assert _proxy_threads(name) == [] and not directory.exists()
        assert docker_engine.containers.get(kept).status == "exited"
    finally:
        docker_engine.containers.get(kept).remove(force=True)


def test_the_pool_replaces_a_quarantined_sandbox(docker_engine):
    with SandboxPool(SandboxConfig(), size=1) as pool:
        pool.wait_ready(timeout=60)
        sandbox = pool.acquire()
        kept = sandbox.quarantine()
        try:
            pool.release(sandbox)
            pool.wait_ready(timeout=60)
            assert pool.ready == 1 and docker_engine.containers.get(kept).status == "exited"
        finally:
            docker_engine.containers.get(kept).remove(force=True)
