"""Make the local set: for each mutation, fetch the release, write the gold and test patches, build the instance
image (which fixes the base commit), run the tests to fill FAIL_TO_PASS / PASS_TO_PASS, and write instances.jsonl."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from roll.swebench.dataset import SWEInstance, write_instances
from roll.swebench.local.author import instance_row, make_patches
from roll.swebench.local.catalog import DATASET_FILE, mutations, packages
from roll.swebench.local.images import build_instance_image
from roll.swebench.local.sdists import fetch_sdist
from roll.swebench.local.validate import compute_test_lists


def make_instance(mutation: dict, timeout: float = 600.0, log: Callable[[str], None] = print) -> SWEInstance:
    pins = packages()
    pin = pins[mutation["repo"]]
    gold, tests = make_patches(fetch_sdist(pin), mutation)
    draft = instance_row(pin, mutation, gold, tests)
    _, commit = build_instance_image(draft, force=True, log=log, expect_commit=False)
    draft = instance_row(pin, mutation, gold, tests, base_commit=commit)
    lists = compute_test_lists(draft, timeout=timeout)
    log(f"{draft.instance_id}: base {commit[:12]}, FAIL_TO_PASS {len(lists.fail_to_pass)}, "
        f"PASS_TO_PASS {len(lists.pass_to_pass)}")
    return instance_row(pin, mutation, gold, tests, commit, lists.fail_to_pass, lists.pass_to_pass)


def make_local_set(instance_ids: list[str] | None = None, output: Path = DATASET_FILE, timeout: float = 600.0,
                   log: Callable[[str], None] = print) -> list[SWEInstance]:
    """(Re)make the chosen instances (all by default) and write the whole set, keeping rows not remade."""
    from roll.swebench.dataset import load_instances

    existing = {i.instance_id: i for i in load_instances(output)} if output.is_file() else {}
    made = {}
    for mutation in mutations():
        if instance_ids and mutation["instance_id"] not in instance_ids:
            continue
        made[mutation["instance_id"]] = make_instance(mutation, timeout, log)
    order = [m["instance_id"] for m in mutations()]
    rows = [made.get(iid) or existing.get(iid) for iid in order]
    write_instances([r for r in rows if r is not None], output)
    return [r for r in rows if r is not None]
