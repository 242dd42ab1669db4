"""The evaluation script run in each instance's fresh container.

Semantics of the official harness: enter the repository, reset the test files the test patch touches to the base
commit, apply the test patch, print the start marker, run the tests, record the test command's own exit code, print
the end marker and the exit code (after the marker, outside the graded region), reset the test files again. The
script runs under `set -uxo pipefail` (no -e), so bash's trace prints the `: '<marker>'` lines.

A swebench 5.x row carries its script: it is used as is, with only the exit-code capture added (as the official
harness does). A classic row gets a script written from its repository spec."""
from __future__ import annotations

import re
import shlex

from roll.swebench.constants import (
    CONTAINER_WORKDIR,
    END_TEST_OUTPUT,
    HEREDOC_DELIMITER,
    NON_TEST_EXTS,
    START_TEST_OUTPUT,
    TEST_EXIT_CODE,
    TEST_EXIT_CODE_VAR,
)
from roll.swebench.dataset import SWEInstance
from roll.swebench.specs import RepoSpec, repo_spec

HEADER = ("#!/bin/bash", "set -uxo pipefail")
_DIFF_TARGET = re.compile(r"^diff --git a/.* b/(.*)$", re.MULTILINE)
_DIFF_MODIFIED = re.compile(r"^--- a/(.*)$", re.MULTILINE)


def patch_targets(patch: str) -> list[str]:
    """Every path a unified git diff writes to (`b/` side), in order."""
    return list(dict.fromkeys(_DIFF_TARGET.findall(patch)))


def modified_files(patch: str) -> list[str]:
    """Paths that exist before the patch (`--- a/` side): what a reset can check out from the base commit."""
    return list(dict.fromkeys(m.rstrip("\t") for m in _DIFF_MODIFIED.findall(patch)))


def directives_for(instance: SWEInstance, spec: RepoSpec) -> list[str]:
    """What the test command is pointed at: the test patch's files (non-test data files left out); for Django,
    dotted module names relative to tests/."""
    directives = [d for d in patch_targets(instance.test_patch) if not d.endswith(NON_TEST_EXTS)]
    if spec.directives == "django":
        dotted = []
        for d in directives:
            d = d.removesuffix(".py")
            d = d.removeprefix("tests/")
            dotted.append(d.replace("/", "."))
        directives = dotted
    return directives


def with_exit_code(lines: list[str]) -> list[str]:
    """Insert the exit-code capture around the first end-marker line; a script without one is left alone (grading
    then trusts the log alone, as the official harness does)."""
    for i, line in enumerate(lines):
        if END_TEST_OUTPUT in line:
            return [*lines[:i], f"{TEST_EXIT_CODE_VAR}=$?", line, f'echo "{TEST_EXIT_CODE}: ${TEST_EXIT_CODE_VAR}"',
                    *lines[i + 1:]]
    return lines


def _body_of(script: str) -> list[str]:
    return [line for line in script.strip().split("\n") if line not in HEADER]


def _heredoc_delimiter(text: str) -> str:
    delimiter = HEREDOC_DELIMITER
    while delimiter in text:
        delimiter += "_X"
    return delimiter


def generated_body(instance: SWEInstance) -> list[str]:
    spec = repo_spec(instance)
    base, workdir = instance.base_commit, CONTAINER_WORKDIR
    test_files = modified_files(instance.test_patch)
    reset = f"git checkout {base} {' '.join(shlex.quote(f) for f in test_files)}" if test_files else None
    delimiter = _heredoc_delimiter(instance.test_patch)
    apply = f"git apply -v - <<'{delimiter}'\n{instance.test_patch}\n{delimiter}"
    test_command = " ".join([spec.test_cmd, *(shlex.quote(d) for d in directives_for(instance, spec))])
    lines = [*spec.setup, f"cd {workdir}", *spec.eval_commands,
             f"git config --global --add safe.directory {workdir}", f"cd {workdir}", "git status", "git show",
             f"git -c core.fileMode=false diff {base}", *spec.setup]
    if reset:
        lines.append(reset)
    if instance.test_patch.strip():
        lines.append(apply)
    lines += [f": '{START_TEST_OUTPUT}'", test_command, f": '{END_TEST_OUTPUT}'"]
    if reset:
        lines.append(reset)
    return lines


def eval_script(instance: SWEInstance) -> str:
    """The full script text for `instance` (its own script if the row has one)."""
    body = _body_of(instance.eval_script) if instance.eval_script else generated_body(instance)
    return "\n".join([*HEADER, *with_exit_code(body)]) + "\n"
