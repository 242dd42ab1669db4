"""Blocking on Ray with a limit: a call or a placement that cannot finish (a GPU that does not exist, a dead or hung
actor) ends in an error naming what was waited for, never in a driver that waits forever."""
from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import PlacementGroup, remove_placement_group


class RayWaitTimeout(TimeoutError):
    """A Ray call or placement did not finish in time. `str(error)` names it."""


def get(refs: Any, timeout: float, what: str) -> Any:
    """`ray.get(refs)`, or RayWaitTimeout naming `what` after `timeout` seconds."""
    try:
        return ray.get(refs, timeout=timeout)
    except GetTimeoutError:
        raise RayWaitTimeout(f"{what}: no answer within {timeout:g}s") from None


def wait_placement(group: PlacementGroup, timeout: float, what: str) -> PlacementGroup:
    """Wait until every bundle of `group` is reserved; else remove it and raise RayWaitTimeout with what is free."""
    if group.wait(timeout_seconds=timeout):
        return group
    bundles = group.bundle_specs
    remove_placement_group(group)
    free = {k: round(v, 3) for k, v in ray.available_resources().items() if k in ("CPU", "GPU")}
    raise RayWaitTimeout(f"{what}: {len(bundles)} bundle(s) of {bundles[0] if bundles else {}} not placed within "
                         f"{timeout:g}s; the cluster has {free} free")
