"""Sandboxes across a Ray cluster: one `SandboxHost` actor per node owns that node's sandboxes.

A node offers sandbox capacity by declaring the custom resource `rock_sandbox` (e.g. `ray start --resources
'{"rock_sandbox": 32}'`). `SandboxCluster` pins one host actor to each such node and places each new sandbox on the
node with the most free capacity. This is the only rock module that imports Ray."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rock.config import SandboxConfig
from rock.reaper import reap
from rock.sandbox import Sandbox

RESOURCE = "rock_sandbox"


@ray.remote(num_cpus=0)
class SandboxHost:
    """Owns the sandboxes of one node. Sandboxes die with the actor (and the reaper collects them if it crashes)."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, Sandbox] = {}

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def create(self, config: dict[str, Any] | None = None) -> str:
        sandbox = Sandbox(SandboxConfig.model_validate(config or {})).start()
        self.sandboxes[sandbox.name] = sandbox
        return sandbox.name

    def run(self, name: str, command: str, timeout: float | None = None, session: str = "default") -> dict[str, Any]:
        return self.sandboxes[name].run(command, timeout=timeout, session=session).model_dump()

    def write_file(self, name: str, path: str, data: bytes) -> None:
        self.sandboxes[name].write_file(path, data)

    def read_file(self, name: str, path: str) -> bytes:
        return self.sandboxes[name].read_file(path)

    def audit(self, name: str) -> list[dict[str, Any]]:
        return [record.model_dump() for record in self.sandboxes[name].audit]

    def destroy(self, name: str) -> None:
        sandbox = self.sandboxes.pop(name, None)
        if sandbox is not None:
            sandbox.stop()

    def names(self) -> list[str]:
        return list(self.sandboxes)

    def shutdown(self) -> None:
        for name in list(self.sandboxes):
            self.destroy(name)


@dataclass
class RemoteSandbox:
    """A handle to a sandbox owned by a host actor on some node."""

    host: Any
    name: str
    node_id: str

    def run(self, command: str, timeout: float | None = None, session: str = "default") -> dict[str, Any]:
        return ray.get(self.host.run.remote(self.name, command, timeout, session))

    def write_file(self, path: str, data: bytes | str) -> None:
        ray.get(self.host.write_file.remote(self.name, path, data.encode() if isinstance(data, str) else data))

    def read_file(self, path: str) -> bytes:
        return ray.get(self.host.read_file.remote(self.name, path))

    def stop(self) -> None:
        ray.get(self.host.destroy.remote(self.name))


class SandboxCluster:
    def __init__(self, resource: str = RESOURCE) -> None:
        self.hosts: dict[str, Any] = {}
        self.capacity: dict[str, float] = {}
        self.load: dict[str, int] = {}
        for node in ray.nodes():
            slots = node.get("Resources", {}).get(resource, 0)
            if node.get("Alive") and slots > 0:
                node_id = node["NodeID"]
                strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
                self.hosts[node_id] = SandboxHost.options(scheduling_strategy=strategy).remote()
                self.capacity[node_id] = slots
                self.load[node_id] = 0
        if not self.hosts:
            raise RuntimeError(f"no Ray node offers the {resource!r} resource: start nodes with "
                               f"--resources '{{\"{resource}\": N}}'")

    def create(self, config: SandboxConfig | None = None) -> RemoteSandbox:
        node_id = min(self.hosts, key=lambda n: self.load[n] / self.capacity[n])
        if self.load[node_id] >= self.capacity[node_id]:
            raise RuntimeError(f"every node is at its {RESOURCE} capacity")
        name = ray.get(self.hosts[node_id].create.remote((config or SandboxConfig()).model_dump()))
        self.load[node_id] += 1
        return RemoteSandbox(self.hosts[node_id], name, node_id)

    def release(self, sandbox: RemoteSandbox) -> None:
        sandbox.stop()
        self.load[sandbox.node_id] -= 1

    def shutdown(self) -> None:
        ray.get([host.shutdown.remote() for host in self.hosts.values()])
        for host in self.hosts.values():
            ray.kill(host)
        self.hosts.clear()


@ray.remote(num_cpus=0)
def _reap_here(older_than: float | None) -> tuple[str, list[str]]:
    return socket.gethostname(), reap(older_than=older_than)


def reap_cluster(older_than: float | None = None, timeout: float = 120.0) -> dict[str, list[str]]:
    """Run the reaper on every live node of the Ray cluster: removes the sandboxes whose owner process is gone
    (env workers that died, or were killed at shutdown). Returns the names removed, by host."""
    refs = [_reap_here.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"],
                                                                                 soft=False)).remote(older_than)
            for node in ray.nodes() if node.get("Alive")]
    removed: dict[str, list[str]] = {}
    for host, names in ray.get(refs, timeout=timeout):
        removed.setdefault(host, []).extend(names)
    return removed
