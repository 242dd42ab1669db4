"""Hand-written adversarial test logs for the grading cross-check: spoofing, missing and duplicated markers, failure
markers, runner quirks of each parser, truncated ids, skipped and xfailed tests, fail-only grading, infra failures."""
from __future__ import annotations

from dataclasses import dataclass, field

START = "+ : '>>>>> Start Test Output'"
END = "+ : '>>>>> End Test Output'"


def wrap(body: str, code: int | None = 0, before: str = "+ git apply -v -\nChecking patch t.py...",
         after: str = "") -> str:
    exit_line = f'>>>>> Test Exit Code: {code}\n' if code is not None else ""
    return f"{before}\n{START}\n{body}\n+ SWEBENCH_TEST_EXIT_CODE=$?\n{END}\n{exit_line}{after}"


@dataclass
class Case:
    name: str
    log: str
    parser: str = "parse_log_pytest"
    f2p: list[str] = field(default_factory=lambda: ["t.py::test_bug"])
    p2p: list[str] = field(default_factory=lambda: ["t.py::test_ok"])
    eval_type: str = "pass_and_fail"
    patch: str | None = "diff --git a/x b/x"


PYTEST_OK = "PASSED t.py::test_bug\nPASSED t.py::test_ok"

CASES = [
    Case("pytest-resolved", wrap(PYTEST_OK)),
    Case("spoof-passed-with-nonzero-exit", wrap(PYTEST_OK, code=1)),
    Case("spoof-passed-with-signal-exit", wrap(PYTEST_OK, code=-9)),
    Case("nonzero-exit-with-a-failure-is-usable", wrap("FAILED t.py::test_bug - AssertionError: x\nPASSED t.py::test_ok",
                                                        code=1)),
    Case("spoofed-exit-code-line-first", wrap(PYTEST_OK + "\n>>>>> Test Exit Code: 0", code=1)),
    Case("no-exit-code-recorded", wrap(PYTEST_OK, code=None)),
    Case("missing-end-marker", f"{START}\n{PYTEST_OK}\n"),
    Case("missing-start-marker", f"{PYTEST_OK}\n{END}\n>>>>> Test Exit Code: 0"),
    Case("patch-apply-failed-marker", wrap(PYTEST_OK, after=">>>>> Patch Apply Failed")),
    Case("tests-timed-out-marker", wrap(PYTEST_OK, after=">>>>> Tests Timed Out")),
    Case("reset-failed-marker", wrap(PYTEST_OK, after=">>>>> Reset Failed")),
    Case("tests-errored-marker", wrap(PYTEST_OK, after=">>>>> Tests Errored")),
    Case("results-outside-markers", wrap("nothing here", before="PASSED t.py::test_bug\nPASSED t.py::test_ok")),
    Case("empty-run-no-evidence", wrap("collected 0 items\n\nno tests ran in 0.01s", code=5)),
    Case("empty-run-with-jest-evidence", wrap("Tests:       3 passed, 3 total")),
    Case("karma-executed-0-of-0", wrap("Executed 0 of 0 SUCCESS")),
    Case("f2p-skipped-is-failure", wrap("SKIPPED t.py::test_bug\nPASSED t.py::test_ok")),
    Case("p2p-skipped-is-maintained", wrap("PASSED t.py::test_bug\nSKIPPED t.py::test_ok")),
    Case("f2p-xfail-passes", wrap("XFAIL t.py::test_bug - reason\nPASSED t.py::test_ok")),
    Case("f2p-error", wrap("ERROR t.py::test_bug - ImportError\nPASSED t.py::test_ok", code=1)),
    Case("f2p-missing-from-log", wrap("PASSED t.py::test_ok")),
    Case("skip-summary-count-ignored", wrap("SKIPPED [2] t.py:10: needs network\nPASSED t.py::test_bug\n"
                                            "PASSED t.py::test_ok"), f2p=["[2]"], p2p=[]),
    Case("truncated-param-agreeing", wrap("PASSED t.py::test_p[log(photon)]\nPASSED t.py::test_p[log(photon2)]\n"
                                          "PASSED t.py::test_ok"), f2p=["t.py::test_p[log(photon"]),
    Case("truncated-param-disagreeing", wrap("PASSED t.py::test_p[log(photon)]\nFAILED t.py::test_p[log(photon2)]\n"
                                             "PASSED t.py::test_ok", code=1), f2p=["t.py::test_p[log(photon"]),
    Case("partial-resolution", wrap("PASSED t.py::test_a\nFAILED t.py::test_b - x\nPASSED t.py::test_ok", code=1),
         f2p=["t.py::test_a", "t.py::test_b"]),
    Case("p2p-regression", wrap("PASSED t.py::test_bug\nFAILED t.py::test_ok - boom", code=1)),
    Case("empty-test-lists-resolve", wrap("PASSED t.py::test_other"), f2p=[], p2p=[]),
    Case("patch-is-none", wrap(PYTEST_OK), patch=None),
    Case("duplicated-start-marker", wrap("FAILED t.py::test_bug - x\n" + START + "\nPASSED t.py::test_bug\n"
                                         "PASSED t.py::test_ok", code=1)),
    Case("status-prefix-oddity", wrap("PASSEDX t.py::test_bug\nPASSED t.py::test_ok")),
    Case("fail-only-absent-passes", wrap("FAILED t.py::test_other - x", code=1), eval_type="fail_only"),
    Case("fail-only-failed-fails", wrap("FAILED t.py::test_bug - x", code=1), eval_type="fail_only"),
    Case("infra-out-of-memory", "Cannot allocate memory\nfatal: unable to fork"),
    Case("infra-ambiguous-missing-module", f"{START}\nModuleNotFoundError: No module named 'x'\n"),
    Case("infra-timeout-message", wrap(PYTEST_OK, code=None).split(END)[0] + "\n\nTimeout error: 1800 seconds "
                                                                                "exceeded."),
    Case("options-path-parameter", wrap("PASSED t.py::test_read[/tmp/abc/data/file.txt]\n"
                                        "FAILED t.py::test_read[//net/share] - x\nPASSED t.py::test_ok", code=1),
         parser="parse_log_pytest_options", f2p=["t.py::test_read[/file.txt]", "t.py::test_read[//net/share]"]),
    Case("v2-ansi-and-old-format", wrap("\x1b[32mPASSED\x1b[0m t.py::test_bug\nt.py::test_ok PASSED\n"
                                        "FAILED t.py::test_x - AssertionError: a - b", code=1),
         parser="parse_log_pytest_v2", f2p=["t.py::test_bug"], p2p=["t.py::test_ok", "t.py::test_x"]),
    Case("matplotlib-mousebutton", wrap("PASSED t.py::test_click[MouseButton.LEFT]\nPASSED t.py::test_ok"),
         parser="parse_log_matplotlib", f2p=["t.py::test_click[1]"]),
    Case("seaborn-format", wrap("t.py::test_bug PASSED [ 50%]\nFAILED t.py::test_ok - x", code=1),
         parser="parse_log_seaborn"),
    Case("django-resolved", wrap(
        "test_a (app.tests.ATest) ... ok\ntest_b (app.tests.ATest) ... ok\n"
        "test_c (app.tests.ATest) ... skipped 'no db'\n\n----\nRan 3 tests in 0.1s\n\nOK (skipped=1)"),
        parser="parse_log_django", f2p=["test_a (app.tests.ATest)"],
        p2p=["test_b (app.tests.ATest)", "test_c (app.tests.ATest)"]),
    Case("django-fail-and-error", wrap(
        "test_a (app.tests.ATest) ... FAIL\ntest_b (app.tests.ATest) ... ERROR\n"
        "======\nFAIL: test_a (app.tests.ATest)\nERROR: test_b (app.tests.ATest)\nFAILED (failures=1, errors=1)",
        code=1), parser="parse_log_django", f2p=["test_a (app.tests.ATest)"], p2p=["test_b (app.tests.ATest)"]),
    Case("django-ok-on-next-line", wrap(
        "test_a (app.tests.ATest) ... some output\nmore output\nok\n"
        "test_b (app.tests.ATest) ... System check identified no issues (0 silenced).\nok"),
        parser="parse_log_django", f2p=["test_a (app.tests.ATest)"], p2p=["test_b (app.tests.ATest)"]),
    Case("django-version-line", wrap("--version is equivalent to version ... ok\n"
                                     "test_x (admin_scripts.tests.T) ... ok"),
         parser="parse_log_django", f2p=["--version is equivalent to version"], p2p=["test_x (admin_scripts.tests.T)"]),
    Case("django-spoof-nonzero-exit", wrap("test_a (app.tests.ATest) ... ok", code=1), parser="parse_log_django",
         f2p=["test_a (app.tests.ATest)"], p2p=[]),
    Case("sympy-resolved", wrap("test_bug ok\ntest_ok ok\n\n= tests finished: 2 passed, in 0.1 seconds ="),
         parser="parse_log_sympy", f2p=["test_bug"], p2p=["test_ok"]),
    Case("sympy-fail-error-header", wrap(
        "test_bug F\ntest_ok E\n\n________ sympy/core/tests/test_x.py:test_bug ________\nTraceback\n"
        "= tests finished: 0 passed, 1 failed, 1 exceptions =", code=1),
        parser="parse_log_sympy", f2p=["test_bug", "sympy/core/tests/test_x.py:test_bug"], p2p=["test_ok"]),
]
