"""The harness on real containers (the local set's images): gold resolves, the base commit does not, empty patches
count as empty, per-instance folders and the summary carry the official files and keys, re-runs skip finished
instances, missing images and unappliable patches are per-instance errors, the patch-apply fallbacks work, a hang
times out, nothing is left running."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.swebench.constants import LOG_EVAL_SCRIPT, LOG_INSTANCE, LOG_PATCH, LOG_REPORT, LOG_TEST_OUTPUT
from roll.swebench.dataset import SWEInstance
from roll.swebench.evaluate import evaluate_predictions
from roll.swebench.local.catalog import local_instances
from roll.swebench.predictions import Prediction, empty_predictions, gold_predictions
from roll.swebench.runner import HarnessSettings, run_instance
from roll.swebench.specs import ImagePolicy

pytestmark = pytest.mark.docker
TWO = ["pytoolz__toolz-90001", "mahmoud__boltons-90002"]
OFFICIAL_SUMMARY_KEYS = {
    "total_instances", "submitted_instances", "completed_instances", "resolved_instances", "unresolved_instances",
    "infra_failure_instances", "ambiguous_failure_instances", "empty_patch_instances", "error_instances",
    "completed_ids", "incomplete_ids", "empty_patch_ids", "submitted_ids", "resolved_ids", "unresolved_ids",
    "infra_failure_ids", "ambiguous_failure_ids", "failure_reasons", "error_ids", "schema_version",
    "unstopped_instances", "unstopped_containers", "unremoved_images"}


def settings(tmp_path: Path, run_id: str = "t", timeout: float = 300.0) -> HarnessSettings:
    return HarnessSettings(run_id=run_id, log_root=tmp_path / "logs", timeout=timeout,
                           images=ImagePolicy(namespace=None), memory="2g", cpus=1.0)


def test_gold_resolves_and_rerun_skips(local_images: dict, tmp_path: Path) -> None:
    instances = local_instances(TWO)
    run = evaluate_predictions(instances, gold_predictions(instances), settings(tmp_path), workers=2,
                               report_dir=tmp_path, show_progress=False)
    report = run.report
    assert set(report) == OFFICIAL_SUMMARY_KEYS
    assert report["resolved_ids"] == sorted(TWO) and report["error_ids"] == []
    assert report["unstopped_instances"] == 0
    assert run.report_path == tmp_path / "gold.t.json"
    assert json.loads(run.report_path.read_text()) == report
    folder = tmp_path / "logs" / "t" / "gold" / TWO[0]
    assert {p.name for p in folder.iterdir()} >= {LOG_INSTANCE, LOG_TEST_OUTPUT, LOG_REPORT, LOG_PATCH,
                                                  LOG_EVAL_SCRIPT}
    entry = json.loads((folder / LOG_REPORT).read_text())[TWO[0]]
    assert entry["resolved"] and entry["patch_successfully_applied"]
    assert entry["tests_status"]["FAIL_TO_PASS"]["success"] == instances[0].FAIL_TO_PASS
    again = evaluate_predictions(instances, gold_predictions(instances), settings(tmp_path), workers=2,
                                 report_dir=tmp_path, show_progress=False)
    assert again.results == [] and again.report["resolved_ids"] == sorted(TWO)


def test_base_commit_fails_and_empty_patches_are_empty(local_images: dict, tmp_path: Path) -> None:
    instance = local_instances(TWO[:1])[0]
    base = run_instance(instance, Prediction(instance_id=instance.instance_id, model_name_or_path="base",
                                             model_patch=""), settings(tmp_path), apply_model_patch=False)
    status = base.report[instance.instance_id]["tests_status"]
    assert base.outcome == "unresolved" and status["FAIL_TO_PASS"]["failure"] == instance.FAIL_TO_PASS
    assert status["PASS_TO_PASS"]["failure"] == []
    run = evaluate_predictions([instance], empty_predictions([instance]), settings(tmp_path, "e"),
                               report_dir=None, show_progress=False)
    assert run.results == [] and run.report["empty_patch_ids"] == [instance.instance_id]
    assert run.report["resolved_instances"] == 0


def test_missing_image_is_a_clear_instance_error(local_images: dict, tmp_path: Path) -> None:
    instance = local_instances(TWO[:1])[0].model_copy(update={"image": "sweb.eval.x86_64.nowhere__x-1:latest"})
    official = instance.model_copy(update={"image": None, "instance_id": "nowhere__x-2"})
    results = [run_instance(i, Prediction(instance_id=i.instance_id, model_patch="x"),
                            HarnessSettings(run_id="m", log_root=tmp_path)) for i in (instance, official)]
    assert [r.outcome for r in results] == ["error", "error"]
    assert "roll eval swebench-local build" in results[0].error
    assert "docker pull swebench/sweb.eval.x86_64.nowhere_1776_x-2:latest" in results[1].error
    assert not (results[0].log_dir / LOG_REPORT).exists()
    assert "not available locally" in (results[0].log_dir / LOG_INSTANCE).read_text()


def test_patch_fallbacks_and_unappliable_patch(local_images: dict, tmp_path: Path) -> None:
    instance = local_instances(TWO[:1])[0]
    lines = instance.patch.splitlines(keepends=True)
    context = next(i for i, line in enumerate(lines) if line.startswith(" ") and line.strip())
    lines[context] = " " + lines[context][1:].replace("y", "Y", 1) if "y" in lines[context] else lines[context]
    drifted = "".join(lines)
    assert drifted != instance.patch
    result = run_instance(instance, Prediction(instance_id=instance.instance_id, model_name_or_path="drift",
                                               model_patch=drifted), settings(tmp_path))
    log = (result.log_dir / LOG_INSTANCE).read_text()
    assert "Failed to apply patch to container: git apply --verbose\n" in log and ">>>>> Applied Patch" in log
    assert result.outcome == "resolved"
    garbage = run_instance(instance, Prediction(instance_id=instance.instance_id, model_name_or_path="junk",
                                                model_patch="diff --git a/nope.py b/nope.py\n--- a/nope.py\n"
                                                            "+++ b/nope.py\n@@ -1 +1 @@\n-x\n+y\n"),
                           settings(tmp_path))
    assert garbage.outcome == "error" and garbage.error.startswith(">>>>> Patch Apply Failed")
    assert not (garbage.log_dir / LOG_REPORT).exists()


def test_hanging_tests_time_out_without_leftovers(local_images: dict, tmp_path: Path) -> None:
    instance = local_instances(["pytoolz__toolz-90002"])[0]
    hang = instance.patch.replace("+    except (KeyError, IndexError, TypeError):",
                                  "+    except (KeyError, IndexError, TypeError, __import__('time').sleep(600)):")
    assert hang != instance.patch
    predictions = [Prediction(instance_id=instance.instance_id, model_name_or_path="hang", model_patch=hang)]
    run = evaluate_predictions([instance], predictions, settings(tmp_path, timeout=8.0), report_dir=None,
                               show_progress=False)
    assert run.results[0].outcome == "error" and "timed out" in run.results[0].error
    assert run.results[0].seconds < 60
    output = (run.results[0].log_dir / LOG_TEST_OUTPUT).read_text()
    assert output.rstrip().endswith("Timeout error: 8 seconds exceeded.")
    assert run.report["error_ids"] == [instance.instance_id]
    assert run.report["failure_reasons"] == {instance.instance_id: "tests_timed_out"}
    assert run.report["unstopped_instances"] == 0


def test_swe_instance_rows_name_their_local_images(local_images: dict) -> None:
    for instance in local_instances():
        assert isinstance(instance, SWEInstance)
        assert local_images[instance.instance_id] == instance.image == f"sweb.eval.x86_64.{instance.instance_id}:latest"


@pytest.mark.slow
def test_whole_local_set_gold_is_100_percent(local_images: dict, tmp_path: Path) -> None:
    instances = local_instances()
    assert len(instances) >= 10
    run = evaluate_predictions(instances, gold_predictions(instances), settings(tmp_path, "all"), workers=2,
                               report_dir=None, show_progress=False)
    assert run.report["resolved_instances"] == len(instances), run.report


@pytest.mark.slow
def test_official_run_instance_agrees_on_our_images(local_images: dict, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The official harness, given our instance as a swebench 5.x row (same image, same script), writes the same
    report.json as ours, for the gold patch and for a wrong one."""
    import docker

    run_evaluation = pytest.importorskip("swebench.harness.run_evaluation")
    from roll.swebench.official import official_test_spec

    instance = local_instances(["mahmoud__boltons-90001"])[0]
    wrong = instance.patch.replace("+            output += list(range(min(range_limits), max(range_limits)+1))",
                                   "+            output += list(range(min(range_limits), max(range_limits)))")
    assert wrong != instance.patch
    spec = official_test_spec(instance, ImagePolicy(namespace=None))
    monkeypatch.chdir(tmp_path)
    client = docker.from_env(timeout=300)
    for name, patch in (("gold", instance.patch), ("wrong", wrong)):
        prediction = Prediction(instance_id=instance.instance_id, model_name_or_path=name, model_patch=patch)
        theirs = run_evaluation.run_instance(spec, prediction.model_dump(), client, "agree", 300)[1]
        ours = run_instance(instance, prediction, settings(tmp_path, "agree")).report
        assert ours == theirs, name
    assert theirs[instance.instance_id]["resolved"] is False
