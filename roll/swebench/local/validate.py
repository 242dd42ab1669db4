"""Compute an instance's FAIL_TO_PASS and PASS_TO_PASS by running its tests, as SWE-bench's validation does: the test
patch's tests on the base commit (no model patch) and with the gold patch, each in a fresh container.
FAIL_TO_PASS = tests that pass with the gold patch and do not pass on the base; PASS_TO_PASS = tests that pass on
both. A test that does not pass with the gold patch is in neither list."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from roll.swebench.constants import LOG_TEST_OUTPUT, PASSING
from roll.swebench.dataset import SWEInstance
from roll.swebench.grading import grade_log, status_map
from roll.swebench.predictions import Prediction
from roll.swebench.runner import HarnessSettings, run_instance
from roll.swebench.specs import ImagePolicy, log_parser_name


class ValidationError(RuntimeError):
    pass


@dataclass
class TestLists:
    fail_to_pass: list[str]
    pass_to_pass: list[str]
    base_statuses: dict[str, str]
    gold_statuses: dict[str, str]
    base_log: str
    gold_log: str


def _run(instance: SWEInstance, prediction: Prediction, root: Path, apply: bool, timeout: float) -> tuple[
        dict[str, str], str]:
    settings = HarnessSettings(run_id="validate", log_root=root, timeout=timeout, images=ImagePolicy(namespace=None))
    result = run_instance(instance, prediction, settings, apply_model_patch=apply)
    if result.outcome == "error":
        raise ValidationError(f"{instance.instance_id}: the {prediction.model_name_or_path} run failed: {result.error}")
    log = (result.log_dir / LOG_TEST_OUTPUT).read_text()
    statuses, usable = status_map(log, log_parser_name(instance))
    if not usable:
        raise ValidationError(f"{instance.instance_id}: the {prediction.model_name_or_path} run left no usable test "
                              f"log (see {result.log_dir})")
    return statuses, log


def compute_test_lists(instance: SWEInstance, timeout: float = 600.0, keep_logs: Path | None = None) -> TestLists:
    with tempfile.TemporaryDirectory(prefix="swe-validate-") as tmp:
        root = keep_logs or Path(tmp)
        base, base_log = _run(instance, Prediction(instance_id=instance.instance_id, model_name_or_path="base",
                                                   model_patch=""), root, False, timeout)
        gold, gold_log = _run(instance, Prediction(instance_id=instance.instance_id, model_name_or_path="gold",
                                                   model_patch=instance.patch), root, True, timeout)
    # sorted: some suites order parametrised tests by set iteration, which changes from run to run
    f2p = sorted(t for t, s in gold.items() if s in PASSING and base.get(t) not in PASSING)
    p2p = sorted(t for t, s in gold.items() if s in PASSING and base.get(t) in PASSING)
    if not f2p:
        raise ValidationError(f"{instance.instance_id}: no test fails on the base commit and passes with the gold "
                              "patch: the hidden tests do not catch the bug")
    lists = TestLists(f2p, p2p, base, gold, base_log, gold_log)
    check_lists(instance.model_copy(update={"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p}), lists)
    return lists


def check_lists(instance: SWEInstance, lists: TestLists) -> None:
    """The gold log must grade as resolved and the base log must not."""
    parser = log_parser_name(instance)
    kwargs = {"fail_to_pass": instance.FAIL_TO_PASS, "pass_to_pass": instance.PASS_TO_PASS}
    if not grade_log(instance.instance_id, lists.gold_log, parser, **kwargs).resolved:
        raise ValidationError(f"{instance.instance_id}: the gold patch does not resolve the instance")
    if grade_log(instance.instance_id, lists.base_log, parser, **kwargs).resolved:
        raise ValidationError(f"{instance.instance_id}: the base commit already resolves the instance")
