"""The strings and names that make our logs, reports and images interchangeable with the official harness (swebench
5.x). These are a protocol: the grader recognises exactly these markers, and reports use exactly these keys."""
from __future__ import annotations

from enum import Enum
from pathlib import Path


class TestStatus(str, Enum):
    FAILED = "FAILED"
    PASSED = "PASSED"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"
    XFAIL = "XFAIL"


class ResolvedStatus(str, Enum):
    NO = "RESOLVED_NO"
    PARTIAL = "RESOLVED_PARTIAL"
    FULL = "RESOLVED_FULL"


class EvalType(str, Enum):
    PASS_AND_FAIL = "pass_and_fail"
    FAIL_ONLY = "fail_only"


PASSING = (TestStatus.PASSED.value, TestStatus.XFAIL.value)
FAILING = (TestStatus.FAILED.value, TestStatus.ERROR.value)

FAIL_TO_PASS = "FAIL_TO_PASS"
PASS_TO_PASS = "PASS_TO_PASS"
FAIL_TO_FAIL = "FAIL_TO_FAIL"
PASS_TO_FAIL = "PASS_TO_FAIL"

# Markers written into run logs and test output.
APPLY_PATCH_FAIL = ">>>>> Patch Apply Failed"
APPLY_PATCH_PASS = ">>>>> Applied Patch"
RESET_FAILED = ">>>>> Reset Failed"
TESTS_ERROR = ">>>>> Tests Errored"
TESTS_TIMEOUT = ">>>>> Tests Timed Out"
START_TEST_OUTPUT = ">>>>> Start Test Output"
END_TEST_OUTPUT = ">>>>> End Test Output"
TEST_EXIT_CODE = ">>>>> Test Exit Code"
TEST_EXIT_CODE_VAR = "SWEBENCH_TEST_EXIT_CODE"
BAD_LOG_MARKERS = (APPLY_PATCH_FAIL, RESET_FAILED, TESTS_ERROR, TESTS_TIMEOUT)

# Inside the evaluation container.
CONTAINER_WORKDIR = "/testbed"
CONTAINER_USER = "root"
CONTAINER_PATCH_FILE = "/tmp/patch.diff"
CONTAINER_EVAL_FILE = "/eval.sh"
HEREDOC_DELIMITER = "EOF_114329324912"

# The order in which a prediction's patch is tried; the tree is reset to pristine between tries.
PATCH_APPLY_COMMANDS = (
    "git apply --verbose",
    "git apply --verbose --3way",
    "git apply --verbose --reject",
    "patch --batch --forward --fuzz=5 -p1 -i",
)
RESET_TREE_COMMAND = "git checkout -- . ; git clean -fd"

# Per-instance files of a run: <log_root>/<run_id>/<model>/<instance_id>/...
DEFAULT_LOG_ROOT = Path("logs/run_evaluation")
LOG_REPORT = "report.json"
LOG_INSTANCE = "run_instance.log"
LOG_TEST_OUTPUT = "test_output.txt"
LOG_PATCH = "patch.diff"
LOG_EVAL_SCRIPT = "eval.sh"
LOG_RUN_METADATA = "run.json"

# Test-patch files with these endings are not test directives.
NON_TEST_EXTS = (".json", ".png", "csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml", ".yaml", ".toml")

# Repositories whose parsers only see failures: an absent test counts as passed.
FAIL_ONLY_REPOS = frozenset({"chartjs/Chart.js", "processing/p5.js", "markedjs/marked", "bpmn-io/bpmn-js",
                             "openlayers/openlayers", "eslint/eslint"})

# Official image naming: `sweb.eval.<arch>.<instance_id>:<tag>`, lower-cased; a registry namespace in front turns
# "__" into "_1776_" (Docker Hub refuses dunders).
DEFAULT_NAMESPACE = "swebench"
DEFAULT_ARCH = "x86_64"
DEFAULT_TAG = "latest"

# Sampling used by the paper for SWE-bench Verified (Avg@3).
PAPER_SAMPLING = {"temperature": 0.7, "top_p": 0.8, "top_k": 20}
