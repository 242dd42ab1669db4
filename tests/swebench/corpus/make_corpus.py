"""Regenerate the real half of the grading corpus (tests/swebench/corpus/real/): run the local set's instances in
their containers with no patch (base), the gold patch, and a few wrong patches (partial fix, a fix that breaks other
tests, a syntax error, a spoofing conftest, a hang), and keep each run's test_output.txt (gzipped) with what grading
needs. Needs Docker and the local images (`roll eval swebench-local build`).

    .venv/bin/python tests/swebench/corpus/make_corpus.py
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from roll.swebench.constants import LOG_TEST_OUTPUT
from roll.swebench.dataset import SWEInstance
from roll.swebench.local.author import GIT_IDENTITY, extract_sdist, replace_once
from roll.swebench.local.catalog import local_instances, packages
from roll.swebench.local.sdists import fetch_sdist
from roll.swebench.predictions import Prediction
from roll.swebench.runner import HarnessSettings, run_instance
from roll.swebench.specs import ImagePolicy

OUT = Path(__file__).resolve().parent / "real"

SPOOF_CONFTEST = '''import os
import pytest


def pytest_collection_modifyitems(session, config, items):
    names = [item.nodeid for item in items]
    items[:] = []
    for name in names:
        print("PASSED " + name)
'''

WRONG = {
    # a special case instead of the rule: 113 still fails -> PARTIAL
    "jpvanhal__inflection-90001/partial": [("inflection/__init__.py", "    if number in (11, 12, 13):\n",
                                            "    if number in (11, 12, 13, 111, 112):\n")],
    # the fix plus a regression elsewhere in the module -> a PASS_TO_PASS test fails
    "mahmoud__boltons-90002/regression": [("boltons/strutils.py", "        if abs_bytes <= next_size:\n",
                                           "        if abs_bytes < next_size:\n"),
                                          ("boltons/strutils.py", "    output = []\n\n    for x in range_string",
                                           "    output = [0]\n\n    for x in range_string")],
    # a syntax error: collection fails
    "pytoolz__toolz-90001/syntax": [("toolz/itertoolz.py", "            for itr in iters:\n                yield next(itr)\n",
                                     "            for itr in iters:\n                yield next(itr\n")],
    # no test runs, but a conftest prints PASSED lines; pytest exits 5 (nothing collected)
    "tkem__cachetools-90002/spoof": [("conftest.py", None, SPOOF_CONFTEST)],
    # get_in hangs: the tests time out
    "pytoolz__toolz-90002/hang": [("toolz/dicttoolz.py", "        return reduce(operator.getitem, keys, coll)\n",
                                   ("        import time; time.sleep(3600)\n"
                                    "        return reduce(operator.getitem, keys, coll)\n"))],
}


def base_tree(instance: SWEInstance, tree: Path) -> None:
    """The instance's base commit on the host: the release with the gold and test patches reversed."""
    pin = packages()[instance.repo]
    extract_sdist(fetch_sdist(pin), tree)
    for name, text in (("test", instance.test_patch), ("gold", instance.patch)):
        patch = tree.parent / f"{name}.diff"
        patch.write_text(text)
        subprocess.run(["git", "apply", "-R", str(patch)], cwd=tree, check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tree.parent), **GIT_IDENTITY}
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True, env=env)
    subprocess.run(["git", "add", "-A", "-f"], cwd=tree, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "base"], cwd=tree, check=True, env=env)


def wrong_patch(instance: SWEInstance, edits: list) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "repo"
        base_tree(instance, tree)
        for path, old, new in edits:
            if old is None:
                (tree / path).write_text(new)
            else:
                replace_once(tree / path, old, new)
        subprocess.run(["git", "add", "-A"], cwd=tree, check=True)
        return subprocess.run(["git", "diff", "--cached"], cwd=tree, check=True, capture_output=True,
                              text=True).stdout


def record(name: str, instance: SWEInstance, prediction: Prediction, apply: bool, timeout: float,
           root: Path) -> dict:
    settings = HarnessSettings(run_id="corpus", log_root=root, timeout=timeout, images=ImagePolicy(namespace=None))
    result = run_instance(instance, prediction, settings, apply_model_patch=apply)
    log = (result.log_dir / LOG_TEST_OUTPUT).read_text()
    file = f"{name.replace('/', '.')}.log.gz"
    (OUT / file).write_bytes(gzip.compress(log.encode(), mtime=0))
    print(f"{name}: {result.outcome} {result.error or ''}".strip())
    return {"name": name, "file": file, "instance_id": instance.instance_id, "log_parser": instance.log_parser,
            "eval_type": instance.eval_type, "FAIL_TO_PASS": instance.FAIL_TO_PASS,
            "PASS_TO_PASS": instance.PASS_TO_PASS, "model_patch": prediction.model_patch if apply else "",
            "outcome": result.outcome}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    instances = {i.instance_id: i for i in local_instances()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for iid, instance in instances.items():
            empty = Prediction(instance_id=iid, model_name_or_path="base", model_patch="")
            gold = Prediction(instance_id=iid, model_name_or_path="gold", model_patch=instance.patch)
            cases.append(record(f"{iid}/base", instance, empty, False, 600, root))
            cases.append(record(f"{iid}/gold", instance, gold, True, 600, root))
        for name, edits in WRONG.items():
            instance = instances[name.split("/")[0]]
            patch = wrong_patch(instance, edits)
            prediction = Prediction(instance_id=instance.instance_id, model_name_or_path=name.split("/")[1],
                                    model_patch=patch)
            cases.append(record(name, instance, prediction, True, 20 if name.endswith("hang") else 600, root))
    (OUT / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} logs in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
