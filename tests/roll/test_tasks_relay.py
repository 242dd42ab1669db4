"""The relay family: splits disjoint by answer, answers that must be read, and an expert that uses only what it
observed (checked on its calls, and end to end in real sandboxes with the real agent loop)."""
from __future__ import annotations

import asyncio
import re

import pytest

from iflow.policy.errors import PolicyError
from roll.tasks import relay


def test_splits_are_disjoint_by_answer_and_sized() -> None:
    by_split = {split: set(relay.codes_of(split)) for split in ("train", "dev", "test")}
    assert not by_split["train"] & by_split["dev"] and not by_split["train"] & by_split["test"]
    assert not by_split["dev"] & by_split["test"]
    assert sum(map(len, by_split.values())) == len(relay.code_space()) == 9000
    assert len(by_split["test"]) > 1000 and len(by_split["dev"]) > 1000
    for split in ("train", "dev", "test"):
        for task in relay.generate(50, seed=3, split=split):
            assert relay.split_of(task.metadata["code"]) == split
            assert task.metadata["split"] == split


def test_instances_vary_where_it_matters() -> None:
    tasks = list(relay.generate(64, seed=0, split="test"))
    assert len({t.metadata["code"] for t in tasks}) > 55
    assert len({t.metadata["chain"][0] for t in tasks}) > 40
    assert [t.model_dump() for t in relay.generate(4, seed=0, split="test")] == [t.model_dump() for t in tasks[:4]]
    for task in tasks:
        code, chain = task.metadata["code"], task.metadata["chain"]
        assert code not in task.instruction and chain[-1] not in task.instruction  # only the first note is named
        assert [path for path, text in task.files.items() if f"access code: {code}" in text] == [chain[-1]]
        assert len(task.files) == len(chain) + 3  # the decoys
        assert sum(f"access code: {code}" in text for text in task.files.values()) == 1


def _play_on_files(task) -> list[dict]:
    """Drive next_call against the task's files as `cat` would print them (no sandbox)."""
    history: list[tuple[str, str]] = []
    calls = []
    while True:
        call = relay.next_call(task.instruction, history)
        calls.append(call)
        if call.name == "submit":
            return calls
        command = call.arguments["command"]
        if command.startswith("cat "):
            history.append((command, task.files.get(command[4:], "cat: No such file or directory")))
        else:
            history.append((command, "(no output)"))


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_expert_arguments_come_from_earlier_observations(hops: int) -> None:
    for task in relay.generate(20, seed=1, split="train", options=relay.RelayOptions(hops=hops)):
        calls = _play_on_files(task)
        assert len(calls) == hops + 2
        seen = task.instruction
        for call in calls[:-1]:
            command = call.arguments["command"]
            argument = command.split()[1]
            assert argument in seen, f"{command!r} uses {argument!r}, never observed"
            if command.startswith("cat "):
                seen += "\n" + task.files[argument]
        assert calls[-2].arguments["command"] == f"echo {task.metadata['code']} > answer.txt"


def test_expert_refuses_what_it_cannot_read() -> None:
    task = relay.make_task(0)
    with pytest.raises(PolicyError):
        relay.next_call(task.instruction, [("cat x", "cat: x: No such file or directory")])


def test_history_is_recovered_from_a_rendered_prompt() -> None:
    prompt = ('<|im_start|>user\nRead the note a/b1.txt and follow it<|im_end|>\n<|im_start|>assistant\n'
              '<tool_call>{"command": "cat a/b1.txt"}</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n'
              'The access code is kept in c/d2.txt .\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
              '<tool_call>{"command": "cat c/d2.txt"}</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n'
              'access code: tiger-42\n</tool_response><|im_end|>\n<|im_start|>assistant\n')
    history = relay.split_after_commands(prompt, ["cat a/b1.txt", "cat c/d2.txt"])
    assert [command for command, _ in history] == ["cat a/b1.txt", "cat c/d2.txt"]
    assert "kept in c/d2.txt" in history[0][1] and "tiger-42" not in history[0][1]
    assert re.search("access code: tiger-42", history[1][1])


@pytest.mark.docker
def test_observing_expert_solves_real_episodes_and_a_wrong_code_fails(sandbox_image, tiny_model_path) -> None:
    from transformers import AutoTokenizer

    from rock import SandboxPool
    from roll.config.loader import load_config
    from roll.rollout.episode import EpisodeRunner

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    defaults = load_config("rollout")
    tasks = list(relay.generate(3, seed=5, split="dev", options=relay.RelayOptions(hops=2)))
    wrong = tasks[0].model_copy(update={"id": "relay-wrong", "verifier": tasks[0].verifier.model_copy(
        update={"command": tasks[0].verifier.command.replace(tasks[0].metadata["code"], "zebra-11")})})

    async def run_all():
        pool = SandboxPool(defaults.sandbox, size=2)
        runner = EpisodeRunner(pool, defaults.agent)
        cut_short = EpisodeRunner(pool, defaults.agent.model_copy(update={"max_turns": 3}))  # cat, cat, echo
        try:
            played = [await runner.run(task, relay.ObservingExpert(task.instruction, tokenizer),
                                       trajectory_id=f"t-{task.id}", group_id=task.id) for task in [*tasks, wrong]]
            return played + [await cut_short.run(tasks[0], relay.ObservingExpert(tasks[0].instruction, tokenizer),
                                                 trajectory_id="t-unsubmitted", group_id=tasks[0].id)]
        finally:
            await asyncio.to_thread(pool.close)

    results = asyncio.run(run_all())
    for result, task in zip(results[:-1], tasks):
        assert result.status == "ok" and result.trajectory.reward == 1.0, (result.status, result.error)
        commands = [turn.tool_call.arguments.get("command") for turn in result.trajectory.turns if turn.tool_call]
        assert commands[:3] == [f"cat {task.metadata['chain'][0]}", f"cat {task.metadata['chain'][1]}",
                                f"echo {task.metadata['code']} > answer.txt"]
    assert results[-2].trajectory.reward == 0.0
    unsubmitted = results[-1].trajectory  # the right code in answer.txt, but the episode ended at its turn limit
    assert unsubmitted.outcome == "max_turns" and unsubmitted.reward == 0.0
    assert unsubmitted.reward_info["unsubmitted"] is True and unsubmitted.reward_info["verifier_score"] == 1.0


def test_task_config_selects_the_family_and_checks_its_splits() -> None:
    from roll.config.loader import load_config
    from roll.evaluate import eval_config
    from roll.tasks.dataset import load_tasks

    cfg = load_config("train", ["task=relay", "task.num_tasks=5", "task.split=dev"])
    tasks = load_tasks(cfg.task)
    assert len(tasks) == 5 and all(t.metadata["family"] == "relay" and t.metadata["split"] == "dev" for t in tasks)
    assert eval_config(cfg).task.split == "test"  # reports on test unless eval.split says otherwise
    assert eval_config(load_config("train", ["task=relay", "eval.split=dev"])).task.split == "dev"
    assert eval_config(load_config("train", [])).task.split == "eval"  # secret_word keeps its held-out split
    resampling = load_config("train", ["rollout.resampling.enabled=true"])
    assert not eval_config(resampling).rollout.resampling.enabled  # held-out episodes never start from a prefix
    with pytest.raises(Exception, match="task.split=eval does not exist for source=relay"):
        load_config("train", ["task=relay", "task.split=eval"])
