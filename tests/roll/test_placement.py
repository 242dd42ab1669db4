"""Waiting on Ray ends: a placement the cluster cannot hold and a call that does not answer raise an error naming
them (the local test cluster has CPUs only, so any GPU demand is one that cannot be met)."""
from __future__ import annotations

import time

import pytest

from roll.config import load_config
from roll.config.placement import PlacementError, check_cluster
from roll.engines.actor import EngineGroup
from roll.ray_wait import RayWaitTimeout, get, wait_placement


def test_a_call_past_its_limit_fails_naming_it(ray_local) -> None:
    class Sleeper:  # defined here so that Ray ships it by value (the test module is not importable by workers)
        def nap(self, seconds: float) -> float:
            time.sleep(seconds)
            return seconds

    actor = ray_local.remote(Sleeper).options(num_cpus=0).remote()
    try:
        assert get(actor.nap.remote(0.0), 30, "sleeper: warm-up") == 0.0
        started = time.monotonic()
        with pytest.raises(RayWaitTimeout, match=r"sleeper: nap: no answer within 1s"):
            get(actor.nap.remote(30.0), 1, "sleeper: nap")
        assert time.monotonic() - started < 10
    finally:
        ray_local.kill(actor)


def test_an_unplaceable_group_fails_and_is_removed(ray_local) -> None:
    from ray.util.placement_group import placement_group, placement_group_table

    group = placement_group([{"CPU": 0.01, "GPU": 1}])
    with pytest.raises(RayWaitTimeout, match=r"engines: 1 bundle\(s\) of .*GPU.* not placed within 2s"):
        wait_placement(group, 2, "engines")
    assert placement_group_table(group)["state"] == "REMOVED"


def test_engines_that_need_a_missing_gpu_fail_before_any_engine_starts(ray_local, tiny_model_path) -> None:
    cfg = load_config("rollout", ["engine.num_gpus=1", "ray.num_gpus=1"]).engine  # declared, but not in this cluster
    started = time.monotonic()
    with pytest.raises(RayWaitTimeout, match="engines: placement of 1 engine"):
        EngineGroup.create(tiny_model_path, cfg, ready_timeout=3)
    assert time.monotonic() - started < 30


def test_the_driver_checks_the_running_cluster_has_the_gpus() -> None:
    cfg = load_config("train", ["ray.num_gpus=2", "trainer.num_gpus_per_actor=1", "engine.num_gpus=1"])
    check_cluster(cfg, 2.0)
    with pytest.raises(PlacementError, match="needs 2 GPUs .* the Ray cluster has 0"):
        check_cluster(cfg, 0.0)
