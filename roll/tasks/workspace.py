"""Set a task's workspace up in a sandbox before the episode, and run its verifier after it.

Failures of the environment itself (a file cannot be written, a setup command fails, the verifier cannot produce a
reward) raise `EnvironmentFailure` with a kind the rollout scheduler's filter understands; a wrong answer is not a
failure (reward 0.0)."""
from __future__ import annotations

import base64
import importlib
import inspect
import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any

from roll.tasks.schema import TaskRecord

ROLL_SESSION = "roll"  # set-up, health check and verifier: a shell the agent never touches
INLINE_LIMIT = 32 * 1024  # files up to this size are written through the shell session (one round trip for all)


class EnvironmentFailure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # sandbox_error | setup_error | verifier_error


@dataclass
class VerifyResult:
    reward: float
    info: dict[str, Any] = field(default_factory=dict)


def score_submission(task: TaskRecord, outcome: str, result: VerifyResult) -> VerifyResult:
    """The verifier's result, or 0 for an episode that never submitted when the task requires it (otherwise a
    policy that repeats its last command until the turn limit is paid as if it had finished)."""
    if not task.verifier.requires_submit or outcome == "submitted":
        return result
    return VerifyResult(0.0, {**result.info, "unsubmitted": True, "verifier_score": result.reward})


def _absolute(workdir: str, path: str) -> str:
    return path if path.startswith("/") else posixpath.join(workdir, path)


def _inline_writes(workdir: str, files: dict[str, str]) -> str:
    """One shell command writing every file (base64 through the session: no docker round trip per file)."""
    parts, folders = [], sorted({posixpath.dirname(_absolute(workdir, p)) for p in files})
    if folders:
        parts.append("mkdir -p " + " ".join(shlex.quote(f) for f in folders))
    for path, content in files.items():
        encoded = base64.b64encode(content.encode()).decode()
        parts.append(f"printf %s {encoded} | base64 -d > {shlex.quote(_absolute(workdir, path))}")
    return " && ".join(parts)


async def prepare_workspace(task: TaskRecord, sandbox: Any) -> None:
    """Write the task's files, then run its setup commands in order (in the roll session)."""
    workdir = sandbox.config.workdir
    small = {p: c for p, c in task.files.items() if len(c.encode()) <= INLINE_LIMIT}
    try:
        for path, content in task.files.items():
            if path not in small:
                await sandbox.write_file(_absolute(workdir, path), content)
        if small:
            result = await sandbox.run(_inline_writes(workdir, small), timeout=task.setup_timeout,
                                       session=ROLL_SESSION)
            if result.exit_code != 0 or result.timed_out:
                raise RuntimeError(f"exit code {result.exit_code}: {result.output[-300:].strip()}")
    except Exception as exc:  # noqa: BLE001 - any failure to write is the environment's
        raise EnvironmentFailure("sandbox_error", f"writing the task files: {type(exc).__name__}: {exc}") from exc
    for command in task.setup:
        try:
            result = await sandbox.run(f"cd {shlex.quote(workdir)} && {command}", timeout=task.setup_timeout,
                                       session=ROLL_SESSION)
        except Exception as exc:  # noqa: BLE001
            raise EnvironmentFailure("sandbox_error", f"setup {command!r}: {type(exc).__name__}: {exc}") from exc
        if result.timed_out or result.exit_code != 0:
            why = "timed out" if result.timed_out else f"exit code {result.exit_code}"
            raise EnvironmentFailure("setup_error", f"setup command {command!r} failed ({why}): "
                                                    f"{result.output[-300:].strip()}")


async def verify(task: TaskRecord, sandbox: Any) -> VerifyResult:
    """Run the verifier in the sandbox (the roll session, never the agent's shell) and turn its result into a
    reward."""
    spec = task.verifier
    if spec.function is not None:
        module_name, _, name = spec.function.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), name)
            value = function(task, sandbox)
            reward, info = await value if inspect.isawaitable(value) else value
        except Exception as exc:  # noqa: BLE001
            raise EnvironmentFailure("verifier_error", f"verifier {spec.function}: {type(exc).__name__}: {exc}") \
                from exc
        return VerifyResult(float(reward), {"verifier": spec.function, **dict(info or {})})
    workdir = sandbox.config.workdir
    try:
        result = await sandbox.run(f"cd {shlex.quote(workdir)} && {spec.command}", timeout=spec.timeout,
                                   session=ROLL_SESSION)
    except Exception as exc:  # noqa: BLE001
        raise EnvironmentFailure("sandbox_error", f"verifier did not run: {type(exc).__name__}: {exc}") from exc
    info = {"exit_code": result.exit_code, "output": result.output[-2000:], "duration": result.duration}
    if result.timed_out:
        raise EnvironmentFailure("verifier_error", f"verifier timed out after {spec.timeout:g}s")
    if spec.reward == "exit_code":
        if result.exit_code not in (0, 1) and spec.other_exit_codes == "verifier_error":
            raise EnvironmentFailure("verifier_error", f"verifier exit code {result.exit_code} (expected 0 or 1): "
                                                       f"{result.output[-300:].strip()}")
        return VerifyResult(1.0 if result.exit_code == 0 else 0.0, info)  # any code but 0 is a failure
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    try:
        return VerifyResult(float(lines[-1]), info)
    except (IndexError, ValueError):
        raise EnvironmentFailure("verifier_error", f"verifier output does not end with a number: "
                                                   f"{result.output[-300:].strip()!r}") from None
