"""The file watch judges only complete listings: an exec that fails or is cut short (a sandbox going away, an
engine timeout) is no evidence that every watched file was deleted, so it raises no persistence or tamper events."""
import pytest

from rock import Sandbox, SandboxConfig
from rock.telemetry.integrity import FileWatch

pytestmark = [pytest.mark.docker]


def test_a_listing_that_does_not_complete_reports_no_deletions(docker_engine):
    with Sandbox(SandboxConfig(command_timeout=30)) as sandbox:
        sandbox.run("mkdir -p tests && echo 'def test_ok(): pass' > tests/test_ok.py")
        outcome = {"cut": False}

        def run(argv):  # the real exec, cut short on demand the way an engine timeout cuts it
            code, output = sandbox.exec(argv)
            return (124, output[: len(output) // 3]) if outcome["cut"] else (code, output)

        watch = FileWatch(run, sandbox.config.workdir, ["tests"], sandbox.name)
        watch.start()
        assert watch.hashes() and any(name.startswith("protected:") for name in watch.hashes())
        outcome["cut"] = True
        assert watch.check() == []  # before the fix: every watched file "deleted"
        outcome["cut"] = False
        sandbox.run("echo 'alias ls=true' >> ~/.bashrc")
        events = watch.check()  # the baseline survived the failed check: the real change is still seen
        assert [(e.category, e.detail["change"]) for e in events] == [("process.persistence", "modified")]
