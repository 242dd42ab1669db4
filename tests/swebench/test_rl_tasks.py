"""SWE instances as RL tasks: the record hides the gold patch and the tests; the agent's sandbox has no hidden test;
the verifier takes the agent's diff out of that sandbox and grades it in a fresh container (reward = resolved)."""
from __future__ import annotations

import json

import pytest

from rock import AsyncSandbox, SandboxConfig
from roll.swebench.local.catalog import local_instances
from roll.swebench.rl import VERIFIER, task_record
from roll.tasks.schema import TaskRecord
from roll.tasks.workspace import prepare_workspace, verify

IID = "pytoolz__toolz-90001"


def test_record_carries_grading_data_but_no_answer() -> None:
    instance = local_instances([IID])[0]
    record = task_record(instance)
    assert TaskRecord.model_validate_json(record.model_dump_json()) == record
    assert record.image == instance.image and record.verifier.function == VERIFIER
    assert instance.problem_statement.strip() in record.instruction and "/testbed" in record.instruction
    hidden = record.metadata["swebench"]
    assert "patch" not in hidden and hidden["test_patch"] == instance.test_patch
    assert instance.patch not in json.dumps(record.model_dump())
    assert "test_interleave" not in record.instruction


@pytest.mark.docker
async def test_verifier_rewards_the_fix_and_not_the_base(local_images: dict) -> None:
    instance = local_instances([IID])[0]
    task = task_record(instance)
    config = SandboxConfig(image=task.image, workdir="/testbed", user="root", memory="1g")
    async with AsyncSandbox(config) as sandbox:
        await prepare_workspace(task, sandbox)
        listing = await sandbox.run("grep -c 'def test_interleave' toolz/tests/test_itertoolz.py; git status "
                                    "--porcelain | wc -l")
        assert listing.output.split() == ["0", "0"]  # the test is hidden; the tree is clean
        unfixed = await verify(task, sandbox)
        assert unfixed.reward == 0.0 and unfixed.info["empty_patch"]
        await sandbox.write_file("/tmp/fix.diff", instance.patch)
        applied = await sandbox.run("git apply /tmp/fix.diff && rm /tmp/fix.diff && python3 -c 'import toolz'")
        assert applied.exit_code == 0, applied.output
        fixed = await verify(task, sandbox)
    assert fixed.reward == 1.0 and fixed.info["resolved"] and fixed.info["FAIL_TO_PASS_passed"] == 1
    assert "+            predicate = partial(operator.is_not, itr)" in fixed.info["model_patch"]


@pytest.mark.docker
async def test_default_user_can_work_on_local_images(local_images: dict) -> None:
    instance = local_instances([IID])[0]
    async with AsyncSandbox(SandboxConfig(image=instance.image, workdir="/testbed")) as sandbox:
        result = await sandbox.run("id -un && touch toolz/new_file.py && git status --porcelain")
    assert result.exit_code == 0 and result.output.split() == ["agent", "??", "toolz/new_file.py"]
