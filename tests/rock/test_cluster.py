import os
import signal
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from rock.cluster import SandboxCluster  # noqa: E402
from rock.procfs import read_stat, same_process  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def two_raylets():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"rock_sandbox": 2}})
    cluster.add_node(num_cpus=1, resources={"rock_sandbox": 2})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_sandboxes_spread_over_two_raylets(two_raylets, docker_engine):
    sandboxes = SandboxCluster()
    try:
        assert len(sandboxes.hosts) == 2
        handles = [sandboxes.create() for _ in range(4)]
        nodes = [h.node_id for h in handles]
        assert len(set(nodes)) == 2 and all(nodes.count(n) == 2 for n in set(nodes))
        for i, handle in enumerate(handles):
            handle.write_file("i.txt", str(i))
            assert handle.run("cat i.txt")["output"] == str(i)
        with pytest.raises(RuntimeError, match="capacity"):
            sandboxes.create()
    finally:
        sandboxes.shutdown()
    names = {h.name for h in handles}
    assert not [c for c in docker_engine.containers.list(all=True) if c.name in names]


def test_reap_cluster_removes_the_sandboxes_of_a_killed_actor(two_raylets, docker_engine, monkeypatch):
    from rock.cluster import SandboxHost, reap_cluster

    monkeypatch.setattr("rock.reaper.reap", lambda *a, **k: [])  # this process's own background sweep waits

    owner = SandboxHost.remote()
    name = ray.get(owner.create.remote({}))
    pid = ray.get(owner.__ray_call__.remote(lambda actor: os.getpid()))
    start = read_stat(pid).start_ticks
    os.kill(pid, signal.SIGKILL)  # as Ray's OOM killer does: nothing of the actor cleans up
    deadline = time.monotonic() + 30
    while same_process(pid, start) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert docker_engine.containers.list(all=True, filters={"name": name}), "gone before the reaper ran"
    removed = reap_cluster()
    assert name in [n for names in removed.values() for n in names]
    assert not docker_engine.containers.list(all=True, filters={"name": name})
