"""The shipped local set: at least 10 instances from at least 5 real packages, consistent with its recipes (patches
regenerate exactly from the pinned sdists), and FAIL_TO_PASS / PASS_TO_PASS that running the tests reproduces."""
from __future__ import annotations

import pytest

from roll.swebench.eval_script import patch_targets
from roll.swebench.local.author import make_patches
from roll.swebench.local.catalog import DATASET_FILE, local_instances, mutations, packages
from roll.swebench.local.sdists import CACHE_DIR, sha256_of
from roll.swebench.local.validate import compute_test_lists


def test_set_shape() -> None:
    instances = local_instances()
    assert len(instances) >= 10
    assert len({i.repo for i in instances}) >= 5
    assert [i.instance_id for i in instances] == [m["instance_id"] for m in mutations()]
    assert DATASET_FILE.stat().st_size < 512 * 1024  # metadata and patches only
    pins = packages()
    for instance in instances:
        assert instance.repo in pins and instance.version == pins[instance.repo].version
        assert instance.FAIL_TO_PASS and not set(instance.FAIL_TO_PASS) & set(instance.PASS_TO_PASS)
        assert all("test" in path for path in patch_targets(instance.test_patch))
        assert not any("test" in path for path in patch_targets(instance.patch))
        assert len(instance.base_commit) == 40 and instance.problem_statement.strip()
        files = {t.split("::")[0] for t in instance.FAIL_TO_PASS + instance.PASS_TO_PASS}
        assert files <= set(patch_targets(instance.test_patch))


def test_patches_regenerate_from_the_pinned_sdists() -> None:
    pins = packages()
    for mutation, instance in zip(mutations(), local_instances()):
        sdist = CACHE_DIR / pins[instance.repo].sdist_name
        if not sdist.is_file() or sha256_of(sdist) != pins[instance.repo].sha256:
            pytest.skip(f"{sdist.name} not cached (roll eval swebench-local build downloads it)")
        assert make_patches(sdist, mutation) == (instance.patch, instance.test_patch), instance.instance_id


@pytest.mark.docker
def test_running_the_tests_reproduces_the_lists(local_images: dict) -> None:
    instance = local_instances(["tkem__cachetools-90002"])[0]
    lists = compute_test_lists(instance)
    assert lists.fail_to_pass == instance.FAIL_TO_PASS
    assert lists.pass_to_pass == instance.PASS_TO_PASS


@pytest.mark.docker
@pytest.mark.slow
def test_every_instance_reproduces(local_images: dict) -> None:
    for instance in local_instances():
        lists = compute_test_lists(instance)
        assert (lists.fail_to_pass, lists.pass_to_pass) == (instance.FAIL_TO_PASS, instance.PASS_TO_PASS)
