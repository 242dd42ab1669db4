"""The agent loop with a token-level policy (a scripted double over the tiny model's real tokenizer) in a real local
workspace: exact incremental prompts, `training_sequences` reproducing them, error masking, forks, replay."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iflow_doubles import ScriptedTokenPolicyDouble, tool_call_text

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.policy import ReplayPolicy
from iflow.trajectory import Trajectory, load_jsonl, save_jsonl, training_sequences

FIX = {"path": "stats.py", "old_str": "(len(values) + 1)", "new_str": "len(values)"}
PYTEST = f"{sys.executable} -m pytest -q -p no:cacheprovider test_stats.py"


def bug_fix_script() -> list[str]:
    return [
        tool_call_text("view", "Let me read the code.\n", path="stats.py"),
        tool_call_text("bash", command=PYTEST),
        "I think the fix is <tool_call>{\"name\": \"str_replace\", \"arguments\": {\"path\": \"stats.py\"",  # broken
        tool_call_text("str_replace", path="stats.py", old_str="len(values) + 2", new_str="x"),  # tool error
        tool_call_text("str_replace", **FIX),
        tool_call_text("bash", command=PYTEST),
        tool_call_text("submit", summary="fixed the mean"),
    ]


def check_sequences_reproduce(trajectory: Trajectory) -> None:
    """training_sequences holds every turn's completion at the right place, with its log-probs and mask."""
    sequences = training_sequences(trajectory)
    turns = {turn.index: turn for turn in trajectory.turns}
    seen = []
    for sequence in sequences:
        positions: dict[int, list[int]] = {}
        for position, turn_id in enumerate(sequence.turn_ids):
            if turn_id >= 0:
                positions.setdefault(turn_id, []).append(position)
        last = turns[max(positions)]
        assert sequence.input_ids == last.prompt_ids + last.completion_ids
        for turn_id, where in positions.items():
            turn = turns[turn_id]
            assert where == list(range(len(turn.prompt_ids), len(turn.prompt_ids) + len(turn.completion_ids)))
            assert [sequence.input_ids[p] for p in where] == turn.completion_ids
            assert [sequence.engine_logprobs[p] for p in where] == turn.logprobs
            assert {sequence.train_mask[p] for p in where} == {turn.train_mask}
            assert sequence.input_ids[: len(turn.prompt_ids)] == turn.prompt_ids
        seen.extend(sorted(positions))
    assert seen == [turn.index for turn in trajectory.turns]  # every turn exactly once, in order


async def test_bug_fix_episode_token_level(bug_repo: Path, tokenizer, tmp_path: Path):
    policy = ScriptedTokenPolicyDouble(tokenizer, bug_fix_script(), end_of_turn=lambda i: i != 1)
    async with LocalBackend(bug_repo) as backend:
        trajectory = await Agent(policy, backend, AgentConfig(max_turns=10)).run("Make test_stats pass.", task_id="t1")
    assert trajectory.outcome == "submitted"
    assert "-    return sum(values) / (len(values) + 1)\n+    return sum(values) / len(values)" in trajectory.submission
    turns = trajectory.turns
    assert [t.tool_call.name if t.tool_call else None for t in turns] == \
        ["view", "bash", None, "str_replace", "str_replace", "bash", "submit"]
    assert "1 failed" in turns[1].observation and "1 passed" in turns[5].observation
    assert [t.train_mask for t in turns] == [1, 1, 0, 0, 1, 1, 1]  # parse error and tool error are masked
    assert turns[2].parse_error and not turns[2].tool_error and turns[3].tool_error and trajectory.parse_errors == 1
    # the first prompt is the chat template's rendering; later prompts extend the last one verbatim
    first_text = tokenizer.apply_chat_template([{"role": "system", "content": trajectory.system_prompt},
                                                {"role": "user", "content": "Make test_stats pass."}],
                                               tokenize=False, add_generation_prompt=True)
    assert turns[0].prompt_ids == list(tokenizer(first_text, add_special_tokens=False)["input_ids"])
    assert turns[0].prompt_ids == policy.prompts[0]
    for before, after in zip(turns, turns[1:]):
        assert not after.fork and after.prompt_ids[: len(before.prompt_ids) + len(before.completion_ids)] == \
            before.prompt_ids + before.completion_ids
    # turn 1 stopped without <|im_end|>: the agent appended it; the others ended with it
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert turns[2].prompt_ids[len(turns[1].prompt_ids) + len(turns[1].completion_ids)] == end
    assert all(t.policy_version == 7 and len(t.logprobs) == len(t.completion_ids) for t in turns)
    # every command a turn ran is attached to that turn, tagged with it
    assert turns[1].commands and all(c["tags"]["turn"] == 1 for c in turns[1].commands)
    assert PYTEST in [c["command"] for c in turns[1].commands] and turns[2].commands == []
    assert all({"context", "policy", "total", "overhead"} <= set(t.timings) for t in turns)
    check_sequences_reproduce(trajectory)
    assert len(training_sequences(trajectory)) == 1
    save_jsonl([trajectory], tmp_path / "t.jsonl")
    assert list(load_jsonl(tmp_path / "t.jsonl")) == [trajectory]


async def test_replay_reproduces_prompts_exactly(bug_repo: Path, tokenizer, tmp_path: Path):
    script = [tool_call_text("view", path="stats.py"), "no call here", tool_call_text("str_replace", **FIX),
              tool_call_text("search", pattern="len"), tool_call_text("submit")]
    async with LocalBackend(bug_repo) as backend:
        recorded = await Agent(ScriptedTokenPolicyDouble(tokenizer, script), backend).run("Fix it.")
    save_jsonl([recorded], tmp_path / "t.jsonl")
    loaded = list(load_jsonl(tmp_path / "t.jsonl"))[0]
    subprocess.run(["git", "checkout", "-q", "."], cwd=bug_repo, check=True)
    replay = ReplayPolicy(loaded, tokenizer)
    async with LocalBackend(bug_repo) as backend:
        again = await Agent(replay, backend).run("Fix it.")
    assert replay.mismatches == []
    assert [t.prompt_ids for t in again.turns] == [t.prompt_ids for t in recorded.turns]
    assert again.submission == recorded.submission and again.outcome == "submitted"


async def test_forks_split_training_sequences_exactly(bug_repo: Path, tokenizer):
    big = "print('x')\n" * 150
    (bug_repo / "big.py").write_text(big)
    script = [tool_call_text("view", path="big.py") for _ in range(9)] + [tool_call_text("submit")]
    config = AgentConfig(max_turns=12, context=ContextConfig(max_context_tokens=2200, max_observation_tokens=500,
                                                             keep_recent_turns=1))
    async with LocalBackend(bug_repo) as backend:
        trajectory = await Agent(ScriptedTokenPolicyDouble(tokenizer, script), backend, config).run("Read big.py")
    assert trajectory.outcome == "submitted"
    forks = [turn.index for turn in trajectory.turns if turn.fork]
    assert forks and all(len(turn.prompt_ids) <= 2200 for turn in trajectory.turns)
    sequences = training_sequences(trajectory)
    assert len(sequences) == len(forks) + 1
    check_sequences_reproduce(trajectory)
    for index in forks:  # a fork's prompt does not extend the previous prompt + completion
        before = trajectory.turns[index - 1]
        assert trajectory.turns[index].prompt_ids[: len(before.prompt_ids)] != before.prompt_ids or \
            len(trajectory.turns[index].prompt_ids) < len(before.prompt_ids) + len(before.completion_ids)


async def test_resume_continues_the_same_token_sequence(bug_repo: Path, tokenizer):
    config = AgentConfig(max_turns=10, text_answer_ends_episode=True)
    async with LocalBackend(bug_repo) as backend:
        script = [tool_call_text("view", path="stats.py"), "It divides wrong."]
        first_policy = ScriptedTokenPolicyDouble(tokenizer, script)
        first = await Agent(first_policy, backend, config).run("What is wrong?")
        assert first.outcome == "answered" and len(first.turns) == 2
        second_policy = ScriptedTokenPolicyDouble(tokenizer, [tool_call_text("str_replace", **FIX), "Fixed."])
        second = await Agent(second_policy, backend, config).run("Then fix it.", resume=first)
    assert second.id == first.id and second.outcome == "answered" and len(second.turns) == 4
    resumed = second.turns[2]
    assert resumed.user_input == "Then fix it." and not resumed.fork
    head = first.turns[1].prompt_ids + first.turns[1].completion_ids
    assert resumed.prompt_ids[: len(head)] == head
    assert "Then fix it." in tokenizer.decode(resumed.prompt_ids[len(head):])
    assert len(training_sequences(second)) == 1
    assert "return sum(values) / len(values)" in (bug_repo / "stats.py").read_text()


async def test_project_context_file_reaches_the_system_prompt(bug_repo: Path, tokenizer):
    (bug_repo / "IFLOW.md").write_text("Always run the tests with pytest -q.")
    async with LocalBackend(bug_repo) as backend:
        trajectory = await Agent(ScriptedTokenPolicyDouble(tokenizer, [tool_call_text("submit")]), backend).run("go")
    assert "Project notes (IFLOW.md):\nAlways run the tests with pytest -q." in trajectory.system_prompt
    assert "Always run the tests" in tokenizer.decode(trajectory.turns[0].prompt_ids)


async def test_tool_schemas_can_be_rendered_by_the_chat_template(bug_repo: Path, tokenizer):
    config = AgentConfig(template_renders_tools=True)
    script = [tool_call_text("view", path="stats.py"), tool_call_text("submit")]
    async with LocalBackend(bug_repo) as backend:
        agent = Agent(ScriptedTokenPolicyDouble(tokenizer, script), backend, config)
        trajectory = await agent.run("Look.")
    messages = [{"role": "system", "content": trajectory.system_prompt}, {"role": "user", "content": "Look."}]
    expected = tokenizer.apply_chat_template(messages, tools=agent.registry.schemas(), tokenize=False,
                                             add_generation_prompt=True)
    assert trajectory.turns[0].prompt_ids == list(tokenizer(expected, add_special_tokens=False)["input_ids"])
    assert "<tools>" in expected and "- bash(" not in trajectory.system_prompt
    assert not trajectory.turns[1].fork and len(training_sequences(trajectory)) == 1
