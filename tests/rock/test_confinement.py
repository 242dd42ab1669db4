"""The hostname the tracer filters on cannot be changed by the agent, and a sandbox whose confinement would let it
(no seccomp filter, a profile allowing user namespaces) is refused at start."""
import json

import pytest

from rock import Sandbox, SandboxConfig
from rock.confinement import ConfinementError, check_confinement
from rock.sandbox import SandboxError

pytestmark = pytest.mark.docker


def test_the_agent_cannot_take_another_hostname(sandbox):
    attempt = sandbox.run("unshare -Uru sh -c 'hostname evil; hostname'; hostname evil2; hostname")
    assert "evil" not in attempt.output
    assert attempt.output.strip().splitlines()[-1] == sandbox.name
    status = sandbox.run("grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status").output.split()
    assert status == ["NoNewPrivs:", "1", "Seccomp:", "2"]


def test_a_profile_that_allows_user_namespaces_is_refused(docker_engine, tmp_path):
    permissive = tmp_path / "allow-all.json"
    permissive.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    sandbox = Sandbox(SandboxConfig(seccomp_profile=str(permissive)))
    with pytest.raises(SandboxError, match="user namespaces"):
        sandbox.start()
    assert not docker_engine.containers.list(all=True, filters={"name": sandbox.name})


class FakeSandboxWithoutSeccomp:
    """Unit-test stand-in: a container whose processes report no seccomp filter (the engine cannot be made to
    start one through rock's config; the real checks run in the tests above)."""

    config = SandboxConfig()

    def session(self):
        class NoHostView:
            def verified_shell(self):
                return None
        return NoHostView()

    def exec(self, argv, timeout=60.0):
        return 0, "Name:\tbash\nNoNewPrivs:\t1\nSeccomp:\t0\nCapEff:\t0000000000000000\n"


def test_no_seccomp_filter_fails_the_check():
    with pytest.raises(ConfinementError, match="not under a seccomp filter"):
        check_confinement(FakeSandboxWithoutSeccomp())
