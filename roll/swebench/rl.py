"""SWE-bench instances as RL tasks (roll's `TaskRecord`), the paper's way: the agent works in a sandbox from the
instance's image with the tests hidden; after the episode the verifier takes the agent's diff out of that sandbox
and evaluates it with the hidden test patch in a fresh container from the same image (the official harness
semantics). Reward = 1.0 when resolved, else 0.0.

    records = [task_record(i) for i in load_instances("docker/swebench-local/instances.jsonl")]
    write_tasks(records, "swe_tasks.jsonl")   # then: roll train task=jsonl task.path=swe_tasks.jsonl sandbox.user=root

The record's metadata carries what grading needs (test patch, test lists, parser) but never the gold patch."""
from __future__ import annotations

import asyncio
import inspect
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from roll.swebench.constants import CONTAINER_WORKDIR
from roll.swebench.dataset import SWEInstance
from roll.swebench.predictions import Prediction
from roll.swebench.runner import HarnessSettings, run_instance
from roll.swebench.specs import ImagePolicy, eval_spec
from roll.tasks.schema import Limits, TaskRecord, Verifier

VERIFIER = "roll.swebench.rl:verify"
PATCH_FILE = "/tmp/.roll_model.patch"
# Build and cache artifacts never belong in a prediction (a binary .pyc hunk would make the patch unappliable).
JUNK = ("__pycache__/", "*.py[cod]", ".pytest_cache/", "*.egg-info/", ".mypy_cache/")

INSTRUCTION = """<uploaded_files>
{workdir}
</uploaded_files>
I've uploaded a code repository in the directory {workdir} (a git repository). Consider the following issue:

<issue_description>
{problem_statement}
</issue_description>

Make the changes to the non-test files in {workdir} needed to resolve the issue. The tests that check it are not in
the repository; you don't need to write or change any tests. Keep the change minimal. When you are done, submit."""


class SWEVerifierError(RuntimeError):
    """The environment, not the agent, failed (missing image, broken container): the episode's reward is unusable."""


def hidden_row(instance: SWEInstance, image: str) -> dict[str, Any]:
    row = instance.to_row()
    row.pop("patch", None)  # the gold patch never travels with a task
    row["image"] = image
    return row


def task_record(instance: SWEInstance, images: ImagePolicy | None = None, *, task_id: str | None = None,
                split: str = "train", eval_timeout: float = 1800.0, log_root: str | Path | None = None,
                run_id: str | None = None, model: str = "agent", limits: Limits | None = None) -> TaskRecord:
    """The RL task for `instance`. With `log_root` and `run_id`, grading writes the official per-instance folder
    (`<log_root>/<run_id>/<model>/<instance_id>/`); otherwise it grades in a temporary folder."""
    spec = eval_spec(instance, images)
    grading = {"timeout": eval_timeout, "model": model, "log_root": str(log_root) if log_root else None,
               "run_id": run_id}
    return TaskRecord(
        id=task_id or instance.instance_id,
        instruction=INSTRUCTION.format(workdir=CONTAINER_WORKDIR, problem_statement=instance.problem_statement.strip()),
        image=spec.image,
        setup=[f"git -C {CONTAINER_WORKDIR} rev-parse --verify HEAD >/dev/null"],
        verifier=Verifier(function=VERIFIER, timeout=eval_timeout + 300.0),
        limits=limits or Limits(),
        metadata={"split": split, "instance_id": instance.instance_id, "swebench": hidden_row(instance, spec.image),
                  "swebench_grading": grading},
    )


async def _call(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def extract_patch(sandbox: Any, workdir: str = CONTAINER_WORKDIR, timeout: float = 120.0) -> str:
    """The agent's change as a git diff against the base commit (new files included, build junk left out)."""
    excludes = " ".join(f"'{pattern}'" for pattern in JUNK)
    command = (f"cd {workdir} && printf '%s\\n' {excludes} >> .git/info/exclude && git add -A && "
               f"git diff --cached --no-color --no-ext-diff HEAD > {PATCH_FILE}")
    result = await _call(sandbox.run(command, timeout=timeout, session="roll-swebench"))
    if result.exit_code != 0:
        raise SWEVerifierError(f"could not take the diff out of the agent's sandbox: {result.output[-500:]}")
    data = await _call(sandbox.read_file(PATCH_FILE))
    return data.decode("utf-8", "replace")


def grade_patch(row: dict[str, Any], patch: str, grading: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Evaluate `patch` in a fresh container: (reward, info). A patch that does not apply or tests that time out
    are the agent's failure (reward 0); anything else that stops evaluation is the environment's."""
    instance = SWEInstance.model_validate({**row, "patch": ""})
    info: dict[str, Any] = {"instance_id": instance.instance_id, "model_patch": patch, "resolved": False}
    if not patch.strip():
        return 0.0, {**info, "empty_patch": True}
    temporary = grading.get("log_root") is None
    root = Path(tempfile.mkdtemp(prefix="swe-grade-")) if temporary else Path(grading["log_root"])
    settings = HarnessSettings(run_id=grading.get("run_id") or f"rl-{uuid.uuid4().hex[:12]}", log_root=root,
                               timeout=float(grading.get("timeout", 1800.0)), images=ImagePolicy(namespace=None))
    prediction = Prediction(instance_id=instance.instance_id, model_name_or_path=grading.get("model") or "agent",
                            model_patch=patch)
    try:
        result = run_instance(instance, prediction, settings)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    info["eval_seconds"] = round(result.seconds, 3)
    if not temporary:
        info["log_dir"] = str(result.log_dir)
    if result.outcome == "error":
        error = result.error or ""
        if error.startswith(">>>>> Patch Apply Failed") or "timed out" in error:
            return 0.0, {**info, "eval_error": error.splitlines()[0] if error else ""}
        raise SWEVerifierError(f"{instance.instance_id}: evaluation failed: {error}")
    entry = result.report[instance.instance_id]
    tests = entry.get("tests_status", {})
    info.update({"resolved": bool(entry["resolved"]), "patch_applied": entry["patch_successfully_applied"]})
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        if key in tests:
            info[f"{key}_passed"] = len(tests[key]["success"])
            info[f"{key}_failed"] = len(tests[key]["failure"])
    return (1.0 if entry["resolved"] else 0.0), info


async def verify(task: TaskRecord, sandbox: Any) -> tuple[float, dict[str, Any]]:
    """The task verifier (`roll.swebench.rl:verify`)."""
    row = task.metadata["swebench"]
    patch = await extract_patch(sandbox)
    return await asyncio.to_thread(grade_patch, row, patch, dict(task.metadata.get("swebench_grading") or {}))


__all__ = ["SWEVerifierError", "extract_patch", "grade_patch", "task_record", "verify"]
