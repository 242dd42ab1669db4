"""Task records, the embedded family, the scripted expert; workspace set-up and verification in real sandboxes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roll.tasks.config import TaskConfig
from roll.tasks.dataset import TaskFileError, load_tasks, read_tasks, write_tasks
from roll.tasks.expert import expert_calls, takes_shortcut
from roll.tasks.schema import Verifier
from roll.tasks.secret_word import SecretWordOptions, generate, make_task
from roll.tasks.workspace import VerifyResult, score_submission
from roll.tasks.words import SECRET_WORDS


def test_a_task_that_requires_submit_scores_an_unsubmitted_episode_zero() -> None:
    task = make_task(0)
    passed = VerifyResult(1.0, {"exit_code": 0})
    assert score_submission(task, "max_turns", passed) is passed  # not required: the verifier decides alone
    strict = task.model_copy(update={"verifier": task.verifier.model_copy(update={"requires_submit": True})})
    assert score_submission(strict, "submitted", passed) is passed
    for outcome in ("max_turns", "max_tokens", "timeout"):
        scored = score_submission(strict, outcome, passed)
        assert scored.reward == 0.0 and scored.info == {"exit_code": 0, "unsubmitted": True, "verifier_score": 1.0}


def test_family_is_deterministic_randomized_and_split() -> None:
    assert make_task(3, seed=1) == make_task(3, seed=1)
    train = list(generate(300, seed=0))
    held_out = list(generate(100, seed=0, split="eval"))
    assert len({t.metadata["word"] for t in train}) > 50  # randomized
    assert len({t.instruction for t in train}) > 250
    signatures = {t.metadata["signature"] for t in train}
    assert not signatures & {t.metadata["signature"] for t in held_out}  # held-out instances never trained on
    task = train[0]
    note = task.metadata["chain"][0]
    assert note in task.instruction and task.files[note] == f"The secret word is {task.metadata['word']}."
    assert len(task.files) == 1 + SecretWordOptions().distractors
    assert task.metadata["word"] in SECRET_WORDS and task.limits.max_turns == 6


def test_two_hops_and_expert_solution() -> None:
    task = make_task(0, options=SecretWordOptions(hops=2, distractors=0))
    first, second = task.metadata["chain"]
    assert task.files[first] == f"The secret word is in {second}."
    calls = expert_calls(task)
    assert [c.name for c in calls] == ["bash", "bash", "bash", "submit"]  # >= 2 tool calls before submitting
    assert calls[0].arguments == {"command": f"cat {first}"}
    assert calls[2].arguments == {"command": f"grep -o 'secret word is [a-z]*' {second} | cut -d' ' -f4 > answer.txt"}


def test_privileged_expert_skips_the_read_on_a_stable_share_of_tasks() -> None:
    task = make_task(0)
    assert [c.arguments.get("command") for c in expert_calls(task, shortcut=True)] == [
        f"echo {task.metadata['word']} > answer.txt", None]
    tasks = list(generate(400, seed=3))
    chosen = [takes_shortcut(t, 0.6) for t in tasks]
    assert chosen == [takes_shortcut(t, 0.6) for t in tasks]  # deterministic per task
    assert 0.5 < sum(chosen) / len(chosen) < 0.7
    assert not any(takes_shortcut(t, 0.0) for t in tasks) and all(takes_shortcut(t, 1.0) for t in tasks)


def test_dataset_roundtrip_and_errors(tmp_path: Path) -> None:
    tasks = list(generate(4, seed=2))
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    assert read_tasks(path) == tasks
    cfg = TaskConfig(source="jsonl", path=str(path), num_tasks=3, shuffle=False)
    assert [t.id for t in load_tasks(cfg)] == [t.id for t in tasks[:3]]
    bad = tmp_path / "bad.jsonl"
    record = tasks[0].model_dump()
    record["verifier"] = {"command": "true", "reward": "percent"}
    bad.write_text(tasks[1].model_dump_json() + "\n" + json.dumps(record) + "\n")
    with pytest.raises(TaskFileError, match=r"bad\.jsonl:2: verifier\.reward: "):
        read_tasks(bad)
    bad.write_text(tasks[1].model_dump_json() + "\n" + tasks[1].model_dump_json() + "\n")
    with pytest.raises(TaskFileError, match="duplicate task id"):
        read_tasks(bad)
    with pytest.raises(ValueError, match="exactly one of 'command' or 'function'"):
        Verifier()


@pytest.mark.docker
async def test_setup_and_verifier_in_a_sandbox(sandbox_image: str) -> None:
    from rock import AsyncSandbox, SandboxConfig
    from roll.tasks.workspace import EnvironmentFailure, prepare_workspace, verify

    task = make_task(5, seed=0)
    async with AsyncSandbox(SandboxConfig(image=sandbox_image, command_timeout=20)) as sandbox:
        await prepare_workspace(task, sandbox)
        assert (await verify(task, sandbox)).reward == 0.0  # nothing written yet
        for call in expert_calls(task)[:-1]:
            result = await sandbox.run(call.arguments["command"], timeout=10)
            assert result.exit_code == 0
        verdict = await verify(task, sandbox)
        assert verdict.reward == 1.0 and verdict.info["exit_code"] == 0
        await sandbox.run("echo wrongword > answer.txt", timeout=10)
        assert (await verify(task, sandbox)).reward == 0.0
        crashing = task.model_copy(update={"verifier": Verifier(command="exit 3")})
        verdict = await verify(crashing, sandbox)  # e.g. pytest 2-5: the answer broke the tests, a failure
        assert verdict.reward == 0.0 and verdict.info["exit_code"] == 3
        opted = task.model_copy(update={"verifier": Verifier(command="exit 3", other_exit_codes="verifier_error")})
        with pytest.raises(EnvironmentFailure) as failure:
            await verify(opted, sandbox)
        assert failure.value.kind == "verifier_error"
        scored = task.model_copy(update={"verifier": Verifier(command="echo progress; echo 0.25",
                                                              reward="stdout_float")})
        assert (await verify(scored, sandbox)).reward == 0.25
        broken = task.model_copy(update={"files": {}, "setup": ["false"]})
        with pytest.raises(EnvironmentFailure) as failure:
            await prepare_workspace(broken, sandbox)
        assert failure.value.kind == "setup_error"


@pytest.mark.docker
def test_golden_trajectories_are_what_the_agent_sees(tmp_path: Path, tiny_model_path: Path,
                                                     sandbox_image: str) -> None:
    from transformers import AutoTokenizer

    from iflow.trajectory import load_jsonl, training_sequences
    from roll.tasks.golden import write_golden

    summary = write_golden(tmp_path / "golden.jsonl", 2, seed=7, model_path=tiny_model_path, concurrency=2,
                           progress=False, timeout=300)
    assert summary["written"] == 2 and summary["shortcuts"] == 0, summary
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    for traj in load_jsonl(tmp_path / "golden.jsonl"):
        assert traj.reward == 1.0 and traj.outcome == "submitted" and len(traj.turns) == 3
        first = traj.turns[0]
        messages = [{"role": "system", "content": traj.system_prompt}, {"role": "user", "content": traj.task}]
        assert first.prompt_ids == tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                                 return_dict=True)["input_ids"]
        (sequence,) = training_sequences(traj)
        assert sequence.input_ids[-1] == tokenizer.eos_token_id
        assert sum(1 for t in sequence.turn_ids if t >= 0) == sum(len(t.completion_ids) for t in traj.turns)
        word = traj.metadata["task"]["word"]
        assert f"The secret word is {word}." in traj.turns[0].observation
        assert traj.turns[1].commands[0]["command"].startswith("grep -o 'secret word is [a-z]*' ")


@pytest.mark.docker
def test_privileged_expert_golden_episodes_skip_the_read(tmp_path: Path, tiny_model_path: Path,
                                                         sandbox_image: str) -> None:
    from iflow.trajectory import load_jsonl
    from roll.tasks.golden import write_golden

    summary = write_golden(tmp_path / "golden.jsonl", 2, seed=7, model_path=tiny_model_path, concurrency=2,
                           progress=False, timeout=300, shortcut_fraction=1.0)
    assert summary["written"] == 2 and summary["shortcuts"] == 2, summary
    for traj in load_jsonl(tmp_path / "golden.jsonl"):
        assert traj.reward == 1.0 and len(traj.turns) == 2 and traj.metadata["expert"] == "shortcut"
        assert [r["command"] for r in traj.turns[0].commands] == [f"echo {traj.metadata['task']['word']} > answer.txt"]
    with pytest.raises(ValueError, match="shortcut_fraction"):
        write_golden(tmp_path / "bad.jsonl", 1, shortcut_fraction=1.5)
