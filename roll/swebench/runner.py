"""Evaluate one prediction on one instance, in a fresh container from the instance's image (never the agent's).

The steps of the official `run_instance`: copy the patch in, try the apply commands in order (resetting the tree
between tries; a patch already fully applied counts), log the diff, copy the eval script in, run it under a timeout,
save its output as test_output.txt, grade it into report.json. A finished instance (report.json present) is not run
again. Errors (missing image, patch that does not apply, timeout, a broken container) leave no report.json: the
instance counts as an error and a re-run tries it again.

The container is a ROCK sandbox (no network by default, capabilities dropped, an init process), so removing it costs
no stop timeout; the eval script's output is streamed out of the container over the session, never through a file the
tests could rewrite."""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
from rock import Sandbox, SandboxConfig
from rock.engine import client as docker_client
from roll.swebench.constants import (
    APPLY_PATCH_FAIL,
    APPLY_PATCH_PASS,
    CONTAINER_EVAL_FILE,
    CONTAINER_PATCH_FILE,
    CONTAINER_USER,
    CONTAINER_WORKDIR,
    DEFAULT_LOG_ROOT,
    LOG_EVAL_SCRIPT,
    LOG_INSTANCE,
    LOG_PATCH,
    LOG_REPORT,
    LOG_TEST_OUTPUT,
    PATCH_APPLY_COMMANDS,
    RESET_TREE_COMMAND,
)
from roll.swebench.dataset import SWEInstance
from roll.swebench.eval_script import eval_script
from roll.swebench.grading import instance_report
from roll.swebench.predictions import Prediction
from roll.swebench.specs import EvalSpec, ImagePolicy, eval_spec


@dataclass(frozen=True)
class HarnessSettings:
    run_id: str
    log_root: Path = DEFAULT_LOG_ROOT
    timeout: float = 1800.0  # the eval script's wall time
    images: ImagePolicy = field(default_factory=ImagePolicy)
    memory: str = "8g"
    cpus: float = 2.0
    pids_limit: int = 8192
    network_mode: str = "none"
    max_output_bytes: int = 32 * 1024 * 1024
    step_timeout: float = 300.0  # each patch-apply / git step

    def log_dir(self, model: str, instance_id: str) -> Path:
        return self.log_root / self.run_id / model.replace("/", "__") / instance_id


@dataclass
class InstanceResult:
    instance_id: str
    outcome: str  # resolved | unresolved | error | cached
    log_dir: Path
    report: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def resolved(self) -> bool:
        return bool(self.report and self.report[self.instance_id]["resolved"])


class EvaluationError(RuntimeError):
    pass


class InstanceLog:
    """run_instance.log: timestamped lines, appended as the run goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a")

    def info(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._file.write(f"{stamp} - {message}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def missing_image_message(image: str, instance_id: str) -> str:
    local = image.startswith("sweb.eval.") and "/" not in image
    how = ("it is a local-set image: build it with `roll eval swebench-local build` (offline, from the package index)"
           if local else f"pull it on a machine with network (`docker pull {image}`), or build it with the official "
           "harness (`python -m swebench.harness.prepare_images`), or point --namespace/--image-template at "
           "images you have")
    return f"image {image} for {instance_id} is not available locally: {how}"


def check_image(image: str, instance_id: str) -> None:
    try:
        docker_client().images.get(image)
    except docker.errors.ImageNotFound:
        raise EvaluationError(missing_image_message(image, instance_id)) from None


def sandbox_config(settings: HarnessSettings, spec: EvalSpec) -> SandboxConfig:
    return SandboxConfig(image=spec.image, workdir=CONTAINER_WORKDIR, user=CONTAINER_USER, memory=settings.memory,
                         cpus=settings.cpus, pids_limit=settings.pids_limit, network_mode=settings.network_mode,
                         command_timeout=settings.step_timeout, max_output_bytes=settings.max_output_bytes,
                         labels={"swebench.run_id": settings.run_id, "swebench.instance_id": spec.instance_id})


def apply_patch(sandbox: Sandbox, log: InstanceLog, timeout: float) -> None:
    """Try each apply command on a pristine tree; accept a patch that turns out to be applied already."""
    output = ""
    for attempt, command in enumerate(PATCH_APPLY_COMMANDS):
        if attempt:
            sandbox.run(f"cd {CONTAINER_WORKDIR} && {{ {RESET_TREE_COMMAND} ; }}", timeout=timeout)
        result = sandbox.run(f"cd {CONTAINER_WORKDIR} && {command} {CONTAINER_PATCH_FILE}", timeout=timeout)
        output = result.output
        if result.exit_code == 0 and not result.timed_out:
            log.info(f"{APPLY_PATCH_PASS}:\n{output}")
            return
        log.info(f"Failed to apply patch to container: {command}")
    check = sandbox.run(f"cd {CONTAINER_WORKDIR} && git apply --check --reverse {CONTAINER_PATCH_FILE}",
                        timeout=timeout)
    if check.exit_code == 0:
        log.info(f"{APPLY_PATCH_PASS}: verified already applied")
        return
    log.info(f"{APPLY_PATCH_FAIL}:\n{output}")
    raise EvaluationError(f"{APPLY_PATCH_FAIL}:\n{output}")


def _git_diff(sandbox: Sandbox, timeout: float) -> str:
    return sandbox.run(f"cd {CONTAINER_WORKDIR} && git -c core.fileMode=false diff", timeout=timeout).output.strip()


def run_instance(instance: SWEInstance, prediction: Prediction, settings: HarnessSettings,
                 apply_model_patch: bool = True) -> InstanceResult:
    """Evaluate `prediction` on `instance`. `apply_model_patch=False` runs the tests on the base commit (used to
    compute FAIL_TO_PASS / PASS_TO_PASS lists)."""
    started = time.monotonic()
    iid = instance.instance_id
    log_dir = settings.log_dir(prediction.model_name_or_path, iid)
    report_path = log_dir / LOG_REPORT
    if report_path.exists():
        return InstanceResult(iid, "cached", log_dir, json.loads(report_path.read_text()))
    log_dir.mkdir(parents=True, exist_ok=True)
    log = InstanceLog(log_dir / LOG_INSTANCE)
    try:
        spec = eval_spec(instance, settings.images)
        check_image(spec.image, iid)
        script = eval_script(instance)
        log.info(f"Creating container for {iid} from {spec.image}...")
        with Sandbox(sandbox_config(settings, spec)) as sandbox:
            log.info(f"Container for {iid} started: {sandbox.id}")
            if apply_model_patch:
                patch = prediction.model_patch or ""
                (log_dir / LOG_PATCH).write_text(patch)
                sandbox.write_file(CONTAINER_PATCH_FILE, patch)
                apply_patch(sandbox, log, settings.step_timeout)
            else:
                log.info(f"Skipping model patch for {iid} (base-commit run)")
            before = _git_diff(sandbox, settings.step_timeout)
            log.info(f"Git diff before:\n{before}")
            (log_dir / LOG_EVAL_SCRIPT).write_text(script)
            sandbox.write_file(CONTAINER_EVAL_FILE, script, mode=0o755)
            result = sandbox.run(f"/bin/bash {CONTAINER_EVAL_FILE}", timeout=settings.timeout)
            output = result.output
            log.info(f"Test runtime: {result.duration:_.2f} seconds")
            if result.truncated_bytes:
                log.info(f"Test output cut by {result.truncated_bytes} bytes (head and tail kept)")
            if result.timed_out:
                output += f"\n\nTimeout error: {settings.timeout:g} seconds exceeded."
                (log_dir / LOG_TEST_OUTPUT).write_text(output)
                raise EvaluationError(f"Test timed out after {settings.timeout:g} seconds.")
            (log_dir / LOG_TEST_OUTPUT).write_text(output)
            after = _git_diff(sandbox, settings.step_timeout)
            log.info(f"Git diff after:\n{after}")
            if after != before:
                log.info("Git diff changed after running eval script")
        report = instance_report(iid, prediction.model_patch if apply_model_patch else "", output, spec.log_parser,
                                 spec.FAIL_TO_PASS, spec.PASS_TO_PASS, spec.eval_type)
        log.info(f"report: {report}\nResult for {iid}: resolved: {report[iid]['resolved']}")
        report_path.write_text(json.dumps(report, indent=4))
        outcome = "resolved" if report[iid]["resolved"] else "unresolved"
        return InstanceResult(iid, outcome, log_dir, report, seconds=time.monotonic() - started)
    except EvaluationError as exc:
        log.info(f"Error in evaluation for {iid}: {exc}")
        return InstanceResult(iid, "error", log_dir, error=str(exc), seconds=time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - any failure is this instance's error, never the run's
        log.info(f"Error in evaluating model for {iid}: {exc}\n{traceback.format_exc()}")
        return InstanceResult(iid, "error", log_dir, error=f"{type(exc).__name__}: {exc}",
                              seconds=time.monotonic() - started)
    finally:
        log.close()
