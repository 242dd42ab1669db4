import time

import pytest

from rock import DEFAULT_IMAGE, Sandbox, SandboxConfig
from rock.engine import client
from rock.telemetry import SafetyPolicy, SandboxMonitor


@pytest.fixture(scope="session")
def docker_engine():
    engine = client()
    engine.images.get(DEFAULT_IMAGE)
    return engine


class Watched:
    """A sandbox, its monitor, and a way to run one agent turn and collect the events it caused."""

    def __init__(self, sandbox: Sandbox, monitor: SandboxMonitor) -> None:
        self.sandbox, self.monitor = sandbox, monitor
        self.policy = SafetyPolicy.load()

    def turn(self, number: int, command: str, timeout: float = 20, settle: float = 0.4):
        self.sandbox.audit.set_tags(turn=number)
        result = self.sandbox.run(command, timeout=timeout)
        time.sleep(settle)
        return result, self.monitor.poll(final=True)


@pytest.fixture
def watched(docker_engine, request):
    with Sandbox(SandboxConfig(command_timeout=30)) as sandbox:
        interfaces = sandbox.run("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").output.split()
        assert interfaces == ["lo"], "refusing to run behaviour tests in a sandbox that has a network"
        sandbox.run("mkdir -p tests && printf 'def test_ok():\\n    assert True\\n' > tests/test_ok.py")
        # detection tests watch a command to its end; stopping it early is test_stop_critical.py's (`stopping`)
        monitor = SandboxMonitor(sandbox, protected=["tests"], stop_critical=request.param
                                 if hasattr(request, "param") else False)
        status = monitor.start()
        assert status.mode == "ebpf", status.reason
        try:
            yield Watched(sandbox, monitor)
        finally:
            monitor.stop()
