"""Grading a test log, with the rules of the official harness (swebench 5.x).

1. A log is unusable (no status map, patch not counted as applied) when it carries a failure marker (patch apply
   failed, reset failed, tests errored or timed out), lacks the start or end marker, yields no test results and shows
   no sign a suite ran, or - anti-spoofing - when the test command exited non-zero while the log reports no failure
   at all (a patch can print its own PASSED lines).
2. FAIL_TO_PASS tests must pass (PASSED or XFAIL); a skipped one is a failure. PASS_TO_PASS tests must pass or be
   skipped. A test missing from the log has failed. Truncated parametrised ids match by prefix when all candidates
   agree on pass versus fail.
3. FULL when every FAIL_TO_PASS and PASS_TO_PASS test succeeds, PARTIAL when some but not all FAIL_TO_PASS tests do
   and every PASS_TO_PASS test does, otherwise NO. Only FULL counts as resolved. An empty list counts as all good."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from roll.swebench.constants import (
    BAD_LOG_MARKERS,
    END_TEST_OUTPUT,
    FAIL_TO_FAIL,
    FAIL_TO_PASS,
    FAILING,
    PASS_TO_FAIL,
    PASS_TO_PASS,
    PASSING,
    START_TEST_OUTPUT,
    TEST_EXIT_CODE,
    EvalType,
    ResolvedStatus,
    TestStatus,
)
from roll.swebench.infra import TIER_ENVIRONMENT, classify_text
from roll.swebench.parsers import get_parser

# Evidence that a runner executed although nothing was parsed (summaries of karma, mocha, jest, TAP, jasmine and the
# openlayers harness). Every count must be non-zero: "Executed 0 of 0" is a suite that never ran.
SUITE_RAN = re.compile(
    r"Executed [1-9]\d* of \d+|TOTAL: [1-9]\d* (?:SUCCESS|FAILED)|[1-9]\d* passing|Tests:\s+[1-9]\d*"
    r"|Test Suites:\s+(?:\d+ \w+, )*[1-9]\d* total|^# tests [1-9]\d*|[1-9]\d* specs?, \d+ failures?|': ok$",
    re.MULTILINE,
)
_EXIT_CODE = re.compile(re.escape(TEST_EXIT_CODE) + r":\s*(-?\d+)")


def recorded_exit_code(log: str) -> int | None:
    match = _EXIT_CODE.search(log)
    return int(match.group(1)) if match else None


def status_map(log: str, parser_name: str) -> tuple[dict[str, str], bool]:
    """`({test: status}, usable)` for a whole test-output log."""
    if any(marker in log for marker in BAD_LOG_MARKERS):
        return {}, False
    if START_TEST_OUTPUT not in log or END_TEST_OUTPUT not in log:
        return {}, False
    parser = get_parser(parser_name)
    between = log.split(START_TEST_OUTPUT)[1].split(END_TEST_OUTPUT)[0]
    statuses = parser(between) or parser(log)  # some runners print results outside the markers
    if not statuses and not SUITE_RAN.search(log):
        return {}, False
    code = recorded_exit_code(log)
    if code not in (None, 0) and statuses and not any(s in FAILING for s in statuses.values()):
        return {}, False  # a non-zero exit with nothing failing: the PASSED lines are not the run's
    return statuses, True


def _lookup(test: str, statuses: dict[str, str]) -> str | None:
    """The key of `test` in `statuses`, tolerating parametrised ids truncated mid-parameter."""
    if test in statuses:
        return test
    if test.count("[") > test.count("]"):
        candidates = [key for key in statuses if key.startswith(test)]
        if candidates and len({statuses[key] in PASSING for key in candidates}) == 1:
            return candidates[0]
    return None


def passed(test: str, statuses: dict[str, str]) -> bool:
    key = _lookup(test, statuses)
    return key is not None and statuses[key] in PASSING


def maintained(test: str, statuses: dict[str, str]) -> bool:
    key = _lookup(test, statuses)
    return passed(test, statuses) or (key is not None and statuses[key] == TestStatus.SKIPPED.value)


def failed(test: str, statuses: dict[str, str]) -> bool:
    key = _lookup(test, statuses)
    return key is None or statuses[key] in (*FAILING, TestStatus.SKIPPED.value)


def _split(tests: list[str], statuses: dict[str, str], ok: Any, eval_type: EvalType) -> dict[str, list[str]]:
    success: list[str] = []
    failure: list[str] = []
    for test in tests:
        if eval_type is EvalType.FAIL_ONLY:
            (failure if statuses.get(test) == TestStatus.FAILED.value else success).append(test)
        elif ok(test, statuses):
            success.append(test)
        elif failed(test, statuses):
            failure.append(test)
    return {"success": success, "failure": failure}


def grade_tests(statuses: dict[str, str], fail_to_pass: list[str], pass_to_pass: list[str],
                 eval_type: str | EvalType = EvalType.PASS_AND_FAIL) -> dict[str, dict[str, list[str]]]:
    kind = EvalType(eval_type)
    return {
        FAIL_TO_PASS: _split(fail_to_pass, statuses, passed, kind),
        PASS_TO_PASS: _split(pass_to_pass, statuses, maintained, kind),
        FAIL_TO_FAIL: {"success": [], "failure": []},
        PASS_TO_FAIL: {"success": [], "failure": []},
    }


def _rate(part: dict[str, list[str]]) -> float:
    total = len(part["success"]) + len(part["failure"])
    return 1.0 if total == 0 else len(part["success"]) / total


def resolution(report: dict[str, dict[str, list[str]]]) -> ResolvedStatus:
    f2p, p2p = _rate(report[FAIL_TO_PASS]), _rate(report[PASS_TO_PASS])
    if f2p == 1 and p2p == 1:
        return ResolvedStatus.FULL
    if 0 < f2p < 1 and p2p == 1:
        return ResolvedStatus.PARTIAL
    return ResolvedStatus.NO


@dataclass(frozen=True)
class Grade:
    resolved: bool
    status: ResolvedStatus
    applied: bool
    report: dict[str, Any]


def instance_report(instance_id: str, model_patch: str | None, log: str | None, parser_name: str,
                    fail_to_pass: list[str], pass_to_pass: list[str],
                    eval_type: str | EvalType = EvalType.PASS_AND_FAIL, include_tests_status: bool = True) -> dict:
    """The per-instance report.json content: `{instance_id: {patch_is_None, patch_exists,
    patch_successfully_applied, resolved, infra_failure, [infra_failure_reason], [tests_status]}}`."""
    entry: dict[str, Any] = {"patch_is_None": False, "patch_exists": False, "patch_successfully_applied": False,
                             "resolved": False, "infra_failure": False}
    report = {instance_id: entry}
    if model_patch is None:
        entry["patch_is_None"] = True
        return report
    entry["patch_exists"] = True
    statuses, usable = status_map(log or "", parser_name)
    if not usable:
        classification = classify_text(log or "")
        if classification:
            reason, tier = classification
            entry["infra_failure"] = tier == TIER_ENVIRONMENT
            entry["infra_failure_reason"] = reason
        return report
    entry["patch_successfully_applied"] = True
    tests = grade_tests(statuses, fail_to_pass, pass_to_pass, eval_type)
    entry["resolved"] = resolution(tests) is ResolvedStatus.FULL
    if include_tests_status:
        entry["tests_status"] = tests
    return report


def grade_log(instance_id: str, log: str, parser_name: str, fail_to_pass: list[str], pass_to_pass: list[str],
              eval_type: str | EvalType = EvalType.PASS_AND_FAIL, model_patch: str | None = "") -> Grade:
    report = instance_report(instance_id, model_patch, log, parser_name, fail_to_pass, pass_to_pass, eval_type)
    entry = report[instance_id]
    tests = entry.get("tests_status")
    status = resolution(tests) if tests else ResolvedStatus.NO
    return Grade(entry["resolved"], status, entry["patch_successfully_applied"], report)
