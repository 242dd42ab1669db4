"""Our grader against the official one (swebench 5.x, a dev dependency): on a corpus of real logs from our container
runs (base, gold and wrong patches on the local set) and adversarial logs, `get_eval_report` and our
`instance_report` must produce the same report (resolved flag, applied flag, infra flags, every test list); the log
parsers must produce the same status maps; and random status maps must grade the same. swebench is imported
outright: without it this module fails to collect (install the dev extra), it never skips."""
from __future__ import annotations

import gzip
import importlib.metadata
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swebench import types as swe_types
from swebench.harness import grading as swebench_grading
from swebench.harness.log_parsers import PARSER_REGISTRY

from roll.swebench.grading import grade_tests, instance_report, resolution
from roll.swebench.parsers import PARSERS
from tests.swebench.adversarial import CASES

REAL = Path(__file__).resolve().parent / "corpus" / "real"


def real_cases() -> list[dict]:
    cases = json.loads((REAL / "manifest.json").read_text())
    for case in cases:
        case["log"] = gzip.decompress((REAL / case["file"]).read_bytes()).decode()
    return cases


def corpus() -> list[dict]:
    adversarial = [{"name": c.name, "log": c.log, "log_parser": c.parser, "FAIL_TO_PASS": c.f2p,
                    "PASS_TO_PASS": c.p2p, "eval_type": c.eval_type, "model_patch": c.patch, "instance_id": "x__y-1"}
                   for c in CASES]
    return real_cases() + adversarial


CORPUS = corpus()


def official_report(case: dict, path: Path) -> dict:
    spec = swe_types.TestSpec(instance_id=case["instance_id"], image="unused", eval_script_list=[], repo="unused",
                    version="0", FAIL_TO_PASS=case["FAIL_TO_PASS"], PASS_TO_PASS=case["PASS_TO_PASS"],
                    log_parser=case["log_parser"], eval_type=case["eval_type"])
    prediction = {"instance_id": case["instance_id"], "model_name_or_path": "m", "model_patch": case["model_patch"]}
    return swebench_grading.get_eval_report(spec, prediction, str(path), include_tests_status=True)


def test_corpus_is_large_and_mixed() -> None:
    real = real_cases()
    assert len(CORPUS) >= 50
    assert len(real) >= 24
    outcomes = {c["outcome"] for c in real}
    assert {"resolved", "unresolved", "error"} <= outcomes
    verdicts = [instance_report(c["instance_id"], c["model_patch"], c["log"], c["log_parser"], c["FAIL_TO_PASS"],
                                c["PASS_TO_PASS"], c["eval_type"])[c["instance_id"]] for c in CORPUS]
    assert sum(v["resolved"] for v in verdicts) >= 15
    assert sum(not v["resolved"] and v["patch_successfully_applied"] for v in verdicts) >= 15
    assert sum(v["patch_exists"] and not v["patch_successfully_applied"] for v in verdicts) >= 10
    assert sum(v["infra_failure"] for v in verdicts) >= 1


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_same_report_as_official(case: dict, tmp_path: Path) -> None:
    path = tmp_path / "test_output.txt"
    path.write_text(case["log"])
    theirs = official_report(case, path)
    ours = instance_report(case["instance_id"], case["model_patch"], case["log"], case["log_parser"],
                           case["FAIL_TO_PASS"], case["PASS_TO_PASS"], case["eval_type"])
    assert ours == theirs


def test_real_logs_grade_as_their_runs_ended() -> None:
    for case in real_cases():
        report = instance_report(case["instance_id"], case["model_patch"], case["log"], case["log_parser"],
                                 case["FAIL_TO_PASS"], case["PASS_TO_PASS"], case["eval_type"])[case["instance_id"]]
        kind = case["name"].split("/")[1]
        assert report["resolved"] is (kind == "gold"), case["name"]
        if kind == "spoof":  # printed PASSED lines, but pytest exited 5: the log is not the run's
            assert report["patch_successfully_applied"] is False
        if kind == "partial":
            statuses = report["tests_status"]
            assert statuses["FAIL_TO_PASS"]["success"] and statuses["FAIL_TO_PASS"]["failure"]
            assert resolution(statuses).value == "RESOLVED_PARTIAL"


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_same_status_map_as_official_parser(case: dict) -> None:
    spec = swe_types.TestSpec(instance_id="x", image="", eval_script_list=[], repo="", version="", FAIL_TO_PASS=[],
                    PASS_TO_PASS=[], log_parser=case["log_parser"], eval_type=case["eval_type"])
    assert PARSERS[case["log_parser"]](case["log"]) == PARSER_REGISTRY[case["log_parser"]](case["log"], spec)


def test_every_python_parser_name_matches_the_registry() -> None:
    from swebench.harness.log_parsers.python import MAP_REPO_TO_PARSER_PY

    for function in MAP_REPO_TO_PARSER_PY.values():
        name = next(k for k, v in PARSER_REGISTRY.items() if v is function)
        assert name in PARSERS


STATUS = st.sampled_from(["PASSED", "FAILED", "SKIPPED", "ERROR", "XFAIL", "XPASS"])
NAME = st.sampled_from(["a", "b", "c[1]", "c[2]", "c[", "d[x]", "d[", "e"])


@settings(max_examples=300, deadline=None)
@given(statuses=st.dictionaries(NAME, STATUS, max_size=6), f2p=st.lists(NAME, max_size=4),
       p2p=st.lists(NAME, max_size=4), eval_type=st.sampled_from(["pass_and_fail", "fail_only"]))
def test_random_status_maps_grade_the_same(statuses: dict, f2p: list, p2p: list, eval_type: str) -> None:
    from swebench.harness.constants import EvalType

    gold = {"FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p}
    theirs = swebench_grading.get_eval_tests_report(statuses, gold, eval_type=EvalType(eval_type))
    ours = grade_tests(statuses, f2p, p2p, eval_type)
    assert ours == theirs
    assert resolution(ours).value == swebench_grading.get_resolution_status(theirs)


def test_the_reference_is_the_pinned_major_version() -> None:
    assert importlib.metadata.version("swebench").split(".")[0] == "5"  # pyproject's dev extra: swebench>=5,<6
