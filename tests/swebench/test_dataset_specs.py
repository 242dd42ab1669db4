"""Loading datasets and predictions, resolving images / parsers / grading type, and writing the eval script."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.swebench.dataset import DatasetError, SWEInstance, load_instances, write_instances
from roll.swebench.eval_script import directives_for, eval_script, modified_files, patch_targets
from roll.swebench.predictions import PredictionError, gold_predictions, load_predictions, read_predictions
from roll.swebench.specs import REPO_SPECS, ImagePolicy, SpecError, eval_spec, official_image_name, repo_spec


def test_loads_json_jsonl_and_parquet_alike(tmp_path: Path, classic_row: dict) -> None:
    rows = [classic_row, {**classic_row, "instance_id": "owner__repo-2", "FAIL_TO_PASS": ["a", "b"]}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    pq.write_table(pa.Table.from_pylist([{**r, "FAIL_TO_PASS": json.dumps(r["FAIL_TO_PASS"])
                                          if isinstance(r["FAIL_TO_PASS"], list) else r["FAIL_TO_PASS"]}
                                         for r in rows]), tmp_path / "d.parquet")
    loaded = [load_instances(tmp_path / name) for name in ("d.json", "d.jsonl", "d.parquet")]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][0].FAIL_TO_PASS == ["tests/test_core.py::test_new"]
    assert loaded[0][1].FAIL_TO_PASS == ["a", "b"]
    only = load_instances(tmp_path / "d.jsonl", instance_ids=["owner__repo-2"])
    assert [i.instance_id for i in only] == ["owner__repo-2"]


def test_round_trip_keeps_unknown_columns(tmp_path: Path, classic_row: dict) -> None:
    row = {**classic_row, "difficulty": "15 min - 1 hour"}
    path = write_instances([SWEInstance.model_validate(row)], tmp_path / "out.jsonl")
    back = json.loads(path.read_text())
    assert back["difficulty"] == "15 min - 1 hour"
    assert back["FAIL_TO_PASS"] == classic_row["FAIL_TO_PASS"]


@pytest.mark.parametrize("content, message", [
    ('[{"instance_id": "a"}]', "repo"),
    ('[{"instance_id": "a", "repo": "r", "base_commit": "c", "FAIL_TO_PASS": "not json"}]', "FAIL_TO_PASS"),
    ('{"instance_id": 1', "not JSON"),
])
def test_bad_rows_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "d.json").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_instances(tmp_path / "d.json")


def test_duplicate_and_unknown_ids(tmp_path: Path, classic_row: dict) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps(classic_row) + "\n" + json.dumps(classic_row) + "\n")
    with pytest.raises(DatasetError, match="duplicate"):
        load_instances(tmp_path / "d.jsonl")
    (tmp_path / "e.jsonl").write_text(json.dumps(classic_row) + "\n")
    with pytest.raises(DatasetError, match="not in"):
        load_instances(tmp_path / "e.jsonl", instance_ids=["nope"])
    with pytest.raises(DatasetError, match="not found"):
        load_instances(tmp_path / "missing.jsonl")


def test_hub_name_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match="local .json/.jsonl/.parquet"):
        load_instances("SWE-bench/SWE-bench_Verified")


def test_official_image_names_match_swebench() -> None:
    image_spec = pytest.importorskip("swebench.image_builder.image_spec")
    for iid in ("django__django-11099", "sympy__sympy-20590", "Owner__Repo-7"):
        for namespace in (None, "swebench"):
            spec = image_spec.ImageSpec(instance_id=iid, dockerfile="FROM x", namespace=namespace)
            assert official_image_name(iid, namespace) == spec.name
    assert official_image_name("django__django-11099") == "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"


def test_image_policy_order(classic: SWEInstance) -> None:
    assert ImagePolicy().image_for(classic) == "swebench/sweb.eval.x86_64.owner_1776_repo-1:latest"
    assert ImagePolicy(namespace=None).image_for(classic) == "sweb.eval.x86_64.owner__repo-1:latest"
    own = classic.model_copy(update={"image": "mine:1"})
    assert ImagePolicy().image_for(own) == "mine:1"
    assert ImagePolicy(template="reg/{id_1776}:{version}").image_for(own) == "reg/owner_1776_repo-1:1.0"


def test_parser_and_grading_type_resolution(classic_row: dict) -> None:
    django = SWEInstance.model_validate({**classic_row, "repo": "django/django"})
    assert eval_spec(django).log_parser == "parse_log_django"
    fail_only = SWEInstance.model_validate({**classic_row, "repo": "eslint/eslint", "log_parser": "parse_log_eslint"})
    assert eval_spec(fail_only).eval_type == "fail_only"
    unknown = SWEInstance.model_validate(classic_row)
    with pytest.raises(SpecError, match="log_parser"):
        eval_spec(unknown)
    with pytest.raises(SpecError, match="test_cmd"):
        eval_script(unknown)


def test_directives_and_reset_files(classic: SWEInstance, classic_row: dict) -> None:
    assert patch_targets(classic.test_patch) == ["tests/test_core.py", "tests/data/new_case.json",
                                                 "tests/test_extra.py"]
    assert modified_files(classic.test_patch) == ["tests/test_core.py"]
    assert directives_for(classic, repo_spec(classic)) == ["tests/test_core.py", "tests/test_extra.py"]
    django = SWEInstance.model_validate({**classic_row, "repo": "django/django"})
    assert directives_for(django, REPO_SPECS["django/django"]) == ["test_core", "test_extra"]


def test_generated_script_follows_the_official_order(classic: SWEInstance) -> None:
    lines = eval_script(classic).splitlines()
    assert lines[:2] == ["#!/bin/bash", "set -uxo pipefail"]
    reset = "git checkout abc123 tests/test_core.py"
    start = lines.index(": '>>>>> Start Test Output'")
    assert lines.index(reset) < lines.index("git apply -v - <<'EOF_114329324912'") < start
    assert lines[start + 1] == "pytest -rA tests/test_core.py tests/test_extra.py"
    assert lines[start + 2:start + 5] == ["SWEBENCH_TEST_EXIT_CODE=$?", ": '>>>>> End Test Output'",
                                          'echo ">>>>> Test Exit Code: $SWEBENCH_TEST_EXIT_CODE"']
    assert lines[-1] == reset
    classic_conda = classic.model_copy(update={"test_cmd": None, "repo": "sympy/sympy"})
    assert "conda activate testbed" in eval_script(classic_conda)


def test_a_5x_row_script_is_the_official_one(classic_row: dict) -> None:
    utils = pytest.importorskip("swebench.harness.utils")
    body = ("#!/bin/bash\nset -uxo pipefail\ncd /testbed\ngit apply -v - <<'EOF_1'\ndiff\nEOF_1\n"
            ": '>>>>> Start Test Output'\npytest -rA t.py\n: '>>>>> End Test Output'\ngit checkout abc t.py\n")
    row = {**classic_row, "image": "img", "eval_script": body, "log_parser": "parse_log_pytest",
           "eval_type": "pass_and_fail"}
    assert eval_script(SWEInstance.model_validate(row)) == utils.make_test_spec(row).eval_script


def test_predictions_files(tmp_path: Path, classic: SWEInstance) -> None:
    rows = [{"instance_id": "owner__repo-1", "model_name_or_path": "m", "model_patch": "p"}]
    (tmp_path / "p.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "p.json").write_text(json.dumps({"owner__repo-1": rows[0]}))
    assert read_predictions(tmp_path / "p.jsonl") == read_predictions(tmp_path / "p.json")
    assert load_predictions("gold", [classic]) == gold_predictions([classic])
    assert load_predictions("gold", [classic])[0].model_patch == classic.patch
    (tmp_path / "dup.jsonl").write_text((json.dumps(rows[0]) + "\n") * 2)
    with pytest.raises(PredictionError, match="two predictions"):
        read_predictions(tmp_path / "dup.jsonl")
    (tmp_path / "p.txt").write_text("")
    with pytest.raises(PredictionError, match=".json or .jsonl"):
        read_predictions(tmp_path / "p.txt")
