import logging
import time

import pytest

from rock import Sandbox
from rock.telemetry import SandboxMonitor

pytestmark = [pytest.mark.docker]


def test_without_ebpf_the_poller_still_sees_long_lived_behaviour_and_says_it_is_degraded(docker_engine, caplog):
    with Sandbox() as sandbox:
        sandbox.write_file("bin/xmrig", "#!/bin/sh\nsleep 3\n", mode=0o755)
        monitor = SandboxMonitor(sandbox, use_ebpf=False, sample_interval=0.2)
        with caplog.at_level(logging.WARNING, logger="rock.telemetry"):
            status = monitor.start()
        try:
            assert status.mode == "degraded"
            assert any("DEGRADED" in message for message in caplog.messages)
            sandbox.audit.set_tags(turn=2)
            sandbox.run("bin/xmrig -o stratum+tcp://127.0.0.1:3333 & sleep 1.5; wait")
            time.sleep(0.5)
            events = monitor.poll(final=True)
        finally:
            monitor.stop()
    mining = [e for e in events if e.category == "compute.mining" and "poller" in e.sources]
    assert mining and mining[0].turn == 2
