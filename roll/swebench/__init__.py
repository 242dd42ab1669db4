"""SWE-bench evaluation with the official harness's semantics (swebench 5.x): datasets, eval scripts, log parsers,
grading, per-instance runs in fresh ROCK containers, reports; a local SWE-style set built from real packages; the
instances as RL tasks. See docs/swebench.md.

    from roll.swebench import load_instances, gold_predictions, evaluate_predictions, HarnessSettings
    instances = load_instances("docker/swebench-local/instances.jsonl")
    run = evaluate_predictions(instances, gold_predictions(instances), HarnessSettings(run_id="gold"), workers=2)
"""
from roll.swebench.dataset import DatasetError, SWEInstance, load_instances, write_instances
from roll.swebench.evaluate import EvaluationRun, evaluate_predictions
from roll.swebench.grading import grade_log, instance_report, status_map
from roll.swebench.predictions import Prediction, gold_predictions, load_predictions, read_predictions
from roll.swebench.runner import HarnessSettings, InstanceResult, run_instance
from roll.swebench.specs import ImagePolicy, official_image_name

__all__ = ["DatasetError", "EvaluationRun", "HarnessSettings", "ImagePolicy", "InstanceResult", "Prediction",
           "SWEInstance", "evaluate_predictions", "gold_predictions", "grade_log", "instance_report",
           "load_instances", "load_predictions", "official_image_name", "read_predictions", "run_instance",
           "status_map", "write_instances"]
