"""The reaper removes what dead owners left, and no single container (bad labels, a removal under way) stops it."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import docker
import pytest

from rock import DEFAULT_IMAGE
from rock.reaper import MANAGED, reap

pytestmark = pytest.mark.docker


def _container_with_labels(engine, **labels):
    return engine.containers.create(DEFAULT_IMAGE, ["sleep", "infinity"], entrypoint=[], network_mode="none",
                                    labels={MANAGED: "1", "rock.owner.host": socket.gethostname(), **labels})


def test_malformed_labels_do_not_stop_the_sweep(docker_engine):
    bad = [_container_with_labels(docker_engine, **{"rock.owner.pid": "not-a-pid", "rock.created": "yesterday"}),
           _container_with_labels(docker_engine, **{"rock.owner.pid": "-1", "rock.owner.start": "x"})]
    try:
        removed = reap()
        assert {c.name for c in bad} <= set(removed)
    finally:
        for container in bad:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass


class FakeApiWhoseFirstRemovalIsAlreadyUnderWay:
    """Unit-test stand-in for the engine: the 409 'removal already in progress' is a race the real engine gives
    only by chance (the real sweep is tested above)."""

    class Response:
        status_code = 409
        reason = "Conflict"

    def __init__(self) -> None:
        dead_owner = {MANAGED: "1", "rock.owner.host": socket.gethostname(), "rock.owner.pid": "0"}
        self.listed = [{"Id": "a", "Names": ["/rock-a"], "Labels": dead_owner},
                       {"Id": "b", "Names": ["/rock-b"], "Labels": dead_owner}]
        self.removed: list[str] = []

    def containers(self, all, filters):  # noqa: A002 - the engine API's own parameter name
        return self.listed

    def remove_container(self, container_id, force):
        if container_id == "a":
            raise docker.errors.APIError("removal of container a is already in progress", self.Response())
        self.removed.append(container_id)


def test_a_removal_already_under_way_does_not_stop_the_sweep():
    fake = FakeApiWhoseFirstRemovalIsAlreadyUnderWay()

    class Client:
        api = fake

    assert reap(Client()) == ["rock-b"] and fake.removed == ["b"]


def test_a_surviving_process_reaps_the_sandboxes_of_a_killed_one(docker_engine):
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from rock import Sandbox
        sandbox = Sandbox().start()
        print(sandbox.name, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    survivor = subprocess.Popen([sys.executable, "-c", "import time; from rock.reaper import "
                                 "start_background_reaper; start_background_reaper(0.5); time.sleep(600)"])
    try:
        name = owner.stdout.readline().strip()
        assert docker_engine.containers.get(name).status == "running"
        os.kill(owner.pid, signal.SIGKILL)  # as Ray's OOM killer does to an env worker
        owner.wait()
        deadline = time.monotonic() + 8  # the survivor sweeps every 0.5 s
        while docker_engine.containers.list(all=True, filters={"name": name}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not docker_engine.containers.list(all=True, filters={"name": name})
    finally:
        for proc in (owner, survivor):
            proc.kill()
            proc.wait()
