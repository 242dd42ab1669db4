"""Where every role of an RL run goes: the GPU demand of each actor (engines, trainer ranks, the KL reference) resolved
against the GPUs the config declares (`ray.num_gpus`, `ray.gpus_per_node`), when the config is loaded.

Ray would otherwise accept the actors and wait forever for a GPU that does not exist; here a layout that does not fit
is one line naming the role that finds no room and the sum of the demand. Placement follows Ray's rules for GPU
resources: a demand below 1 shares one GPU with others, a demand of 1 or more takes that many whole GPUs of one node
(first fit, largest demands first)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PlacementError(ValueError):
    """The declared GPUs cannot hold the run's actors. `str(error)` is one line."""


@dataclass(frozen=True)
class Demand:
    role: str  # e.g. "engine 2", "trainer rank 0", "reference"
    gpus: float
    config_key: str  # where the demand is configured


@dataclass(frozen=True)
class Slot:
    node: int
    gpus: tuple[int, ...]  # GPU indices within the node


def demands(cfg: Any) -> list[Demand]:
    """The GPU demand of every actor the RL driver starts for `cfg` (a RootConfig)."""
    engine, trainer = cfg.engine, cfg.trainer
    out = [Demand(f"engine {i}", engine.num_gpus, "engine.num_gpus") for i in range(engine.num_engines)]
    out += [Demand(f"trainer rank {r}", trainer.num_gpus_per_actor, "trainer.num_gpus_per_actor")
            for r in range(trainer.world_size)]
    if cfg.algorithm.kl_coef > 0:  # the frozen reference model for the KL penalty runs in its own actor
        out.append(Demand("reference (algorithm.kl_coef > 0)", trainer.num_gpus_per_actor,
                          "trainer.num_gpus_per_actor"))
    return out


def _summary(needs: list[Demand]) -> str:
    parts: dict[str, tuple[int, float]] = {}
    for d in needs:
        if d.gpus > 0:
            kind = d.role.split(" ")[0]
            count, _ = parts.get(kind, (0, d.gpus))
            parts[kind] = (count + 1, d.gpus)
    return " + ".join(f"{kind} {n}x{g:g}" for kind, (n, g) in parts.items())


def place(cfg: Any) -> dict[str, Slot]:
    """Each GPU-using role's node and GPUs; raises PlacementError (one line) when the declared GPUs cannot hold them."""
    needs = [d for d in demands(cfg) if d.gpus > 0]
    if not needs:
        return {}
    total = sum(d.gpus for d in needs)
    declared, per_node = cfg.ray.num_gpus, cfg.ray.gpus_per_node
    if declared is None:
        raise PlacementError(f"placement: the run asks for {total:g} GPUs ({_summary(needs)}) but ray.num_gpus is "
                             f"not set: declare the cluster's GPUs")
    per_node = per_node or declared
    if declared % per_node:
        raise PlacementError(f"placement: ray.num_gpus={declared} is not a multiple of ray.gpus_per_node={per_node}")
    for d in needs:
        if d.gpus > 1 and d.gpus != int(d.gpus):
            raise PlacementError(f"placement: {d.role} asks for {d.gpus:g} GPUs ({d.config_key}): above 1 a demand "
                                 f"must be a whole number of GPUs")
    free = [[1.0] * per_node for _ in range(declared // per_node)]
    slots: dict[str, Slot] = {}
    for d in sorted(needs, key=lambda d: -d.gpus):  # stable: roles of one size keep their order
        slot = _first_fit(free, d.gpus)
        if slot is None:
            raise PlacementError(
                f"placement: {d.role} ({d.gpus:g} GPU, {d.config_key}) does not fit: the roles need {total:g} GPUs "
                f"({_summary(needs)}), ray.num_gpus declares {declared}"
                + (f" ({per_node} per node)" if per_node != declared else ""))
        slots[d.role] = slot
    return {d.role: slots[d.role] for d in needs}


def _first_fit(free: list[list[float]], gpus: float) -> Slot | None:
    eps = 1e-9
    for node, capacity in enumerate(free):
        if gpus < 1:
            for index, left in enumerate(capacity):
                if left + eps >= gpus:
                    capacity[index] = left - gpus
                    return Slot(node, (index,))
        else:
            whole = [i for i, left in enumerate(capacity) if left >= 1 - eps][: int(gpus)]
            if len(whole) == int(gpus):
                for index in whole:
                    capacity[index] = 0.0
                return Slot(node, tuple(whole))
    return None


def check_cluster(cfg: Any, cluster_gpus: float) -> None:
    """At start-up: the running Ray cluster has at least the GPUs the run needs (Ray would wait for them forever)."""
    total = sum(d.gpus for d in demands(cfg) if d.gpus > 0)
    if total > cluster_gpus + 1e-9:
        raise PlacementError(f"placement: the run needs {total:g} GPUs ({_summary(demands(cfg))}) but the Ray "
                             f"cluster has {cluster_gpus:g}")
