"""Attack tests: the agent cannot stop its own sandbox by killing what keeps the container alive."""
import pytest

from rock import Sandbox, SandboxConfig
from rock.sandbox import SandboxDied

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("attack", ["kill -9 -1", "pkill sleep; pkill -9 sleep", "kill -9 1; kill -TERM 1",
                                    "pkill -9 -f docker-init; pkill -9 -u 2147483646"])
def test_the_agent_cannot_kill_the_keepalive(docker_engine, attack):
    with Sandbox(SandboxConfig()) as sandbox:
        sandbox.run("sleep 300 &")
        sandbox.run(attack, timeout=10)
        assert sandbox.check_alive() is None
        assert docker_engine.api.inspect_container(sandbox.id)["State"]["Running"]
        assert sandbox.run("echo alive").output == "alive\n"
        keepalive = [p for p in sandbox.processes() if p["args"] == "sleep infinity"]
        assert len(keepalive) == 1 and keepalive[0]["user"] != "agent"


def test_a_root_agent_cannot_kill_the_keepalive_either(docker_engine):
    with Sandbox(SandboxConfig(user="root")) as sandbox:
        sandbox.run("kill -9 -1; pkill -9 sleep", timeout=10)
        assert sandbox.check_alive() is None and sandbox.run("echo alive").output == "alive\n"


def test_a_sandbox_that_dies_raises_sandbox_died_and_remembers_it(docker_engine):
    with Sandbox(SandboxConfig()) as sandbox:
        docker_engine.api.kill(sandbox.id)  # from outside: the only way left to stop it
        with pytest.raises(SandboxDied) as caught:
            sandbox.run("echo hello")
        assert caught.value.death.status in ("exited", "dead", "removed") and sandbox.died is caught.value.death
        assert sandbox.check_alive() is sandbox.died


def test_the_keepalive_uid_is_reserved(docker_engine):
    with pytest.raises(ValueError, match="reserved"):
        SandboxConfig(user="2147483646")
