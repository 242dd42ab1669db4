import os

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from rock.cluster import SandboxCluster  # noqa: E402

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
