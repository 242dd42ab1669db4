"""The agent loop's rules with message-level policies (scripted doubles) in a real local workspace: limits, hooks,
approval modes, plain answers, native tool calls, policy failures."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from iflow_doubles import ScriptedMessagePolicyDouble, ScriptedTokenPolicyDouble, tool_call_text

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig, ContextConfig
from iflow.policy import Completion, PolicyConnectionError
from iflow.trajectory import ToolCall

VIEW = tool_call_text("view", path="stats.py")
EDIT = tool_call_text("str_replace", path="stats.py", old_str="(len(values) + 1)", new_str="len(values)")
BASH = tool_call_text("bash", command="echo ran > ran.txt")


@pytest.fixture
async def backend(bug_repo: Path):
    async with LocalBackend(bug_repo, command_timeout=10) as local:
        yield local


async def test_max_turns(backend):
    trajectory = await Agent(ScriptedMessagePolicyDouble([], fallback=VIEW), backend, AgentConfig(max_turns=3)).run("t")
    assert trajectory.outcome == "max_turns" and len(trajectory.turns) == 3
    assert all(turn.prompt_messages and turn.prompt_ids is None for turn in trajectory.turns)


async def test_max_total_tokens(backend, tokenizer):
    policy = ScriptedTokenPolicyDouble(tokenizer, lambda ids: VIEW)
    trajectory = await Agent(policy, backend, AgentConfig(max_total_tokens=40)).run("t")
    assert trajectory.outcome == "max_tokens"
    assert sum(len(turn.completion_ids) for turn in trajectory.turns) >= 40
    assert sum(len(turn.completion_ids) for turn in trajectory.turns[:-1]) < 40


async def test_wall_time_limit_ends_a_hanging_model_call(backend):
    class HangingPolicyDouble:
        async def chat(self, messages, tools, sampling):
            await asyncio.sleep(60)

    trajectory = await Agent(HangingPolicyDouble(), backend, AgentConfig(max_wall_seconds=0.5)).run("t")
    assert trajectory.outcome == "timeout" and "wall time" in trajectory.error


async def test_wall_time_limit_interrupts_a_hanging_command(backend):
    policy = ScriptedMessagePolicyDouble([tool_call_text("bash", command="cd /tmp && sleep 60")])
    trajectory = await Agent(policy, backend, AgentConfig(max_wall_seconds=1.0, command_timeout=30)).run("t")
    assert trajectory.outcome == "timeout" and "during the bash tool" in trajectory.error
    assert trajectory.turns[0].tool_error and trajectory.turns[0].train_mask == 0
    assert (await backend.run("echo fresh; pwd")).output.split() == ["fresh", backend.workdir]  # a new shell


async def test_a_crashing_policy_gives_an_errored_trajectory(backend):
    class BrokenPolicyDouble:
        async def chat(self, messages, tools, sampling):
            raise KeyError("boom")

    trajectory = await Agent(BrokenPolicyDouble(), backend).run("t")
    assert trajectory.outcome == "error" and trajectory.error == "KeyError: 'boom'"
    assert "KeyError" in trajectory.metadata["traceback"]


async def test_policy_timeout_and_policy_errors_end_the_episode_with_a_message(backend):
    class SlowPolicyDouble:
        async def chat(self, messages, tools, sampling):
            await asyncio.sleep(5)

    slow = await Agent(SlowPolicyDouble(), backend, AgentConfig(policy_timeout=0.2)).run("t")
    assert slow.outcome == "error" and "policy_timeout" in slow.error

    class UnreachablePolicyDouble:
        async def chat(self, messages, tools, sampling):
            raise PolicyConnectionError("cannot reach the model server at http://127.0.0.1:9/v1")

    failed = await Agent(UnreachablePolicyDouble(), backend).run("t")
    assert failed.outcome == "error" and "cannot reach" in failed.error


async def test_on_turn_end_can_terminate(backend):
    seen = []

    async def safety(turn, trajectory):
        seen.append(turn.index)
        return "dangerous command" if turn.tool_call and turn.tool_call.name == "bash" else None

    policy = ScriptedMessagePolicyDouble([VIEW, BASH, VIEW])
    trajectory = await Agent(policy, backend, on_turn_end=safety).run("t")
    assert trajectory.outcome == "terminated" and seen == [0, 1]
    assert trajectory.metadata["termination_reason"] == "dangerous command"


async def test_plain_text_is_an_error_in_training_and_an_answer_in_use(backend):
    training = await Agent(ScriptedMessagePolicyDouble(["I am done."], fallback=tool_call_text("submit")),
                           backend).run("t")
    assert training.turns[0].parse_error.startswith("no tool call found") and training.turns[0].train_mask == 0
    assert training.outcome == "submitted" and training.parse_errors == 1
    interactive = await Agent(ScriptedMessagePolicyDouble(["I am done."]), backend,
                              AgentConfig(text_answer_ends_episode=True)).run("t")
    assert interactive.outcome == "answered" and interactive.turns[0].observation == ""


async def test_default_mode_asks_before_commands_and_edits(backend, bug_repo: Path):
    asked = []

    async def approver(call: ToolCall):
        asked.append(call.name)
        return True if call.name == "bash" else "not that file"

    policy = ScriptedMessagePolicyDouble([VIEW, EDIT, BASH, tool_call_text("submit")])
    trajectory = await Agent(policy, backend, AgentConfig(approval_mode="default"), approver=approver).run("t")
    assert asked == ["str_replace", "bash"]  # view and submit are read-only
    assert "declined this str_replace call: not that file" in trajectory.turns[1].observation
    assert "(len(values) + 1)" in (bug_repo / "stats.py").read_text() and (bug_repo / "ran.txt").exists()
    nobody = await Agent(ScriptedMessagePolicyDouble([BASH, tool_call_text("submit")]), backend,
                         AgentConfig(approval_mode="default")).run("t")
    assert "no one can approve it" in nobody.turns[0].observation


async def test_auto_edit_and_plan_modes(backend, bug_repo: Path):
    asked = []

    async def approver(call):
        asked.append(call.name)
        return False

    await Agent(ScriptedMessagePolicyDouble([EDIT, BASH, tool_call_text("submit")]), backend,
                AgentConfig(approval_mode="auto-edit"), approver=approver).run("t")
    assert asked == ["bash"] and "len(values)\n" in (bug_repo / "stats.py").read_text()
    assert not (bug_repo / "ran.txt").exists()
    plan = await Agent(ScriptedMessagePolicyDouble([BASH, tool_call_text("submit")]), backend,
                       AgentConfig(approval_mode="plan")).run("t")
    assert "unknown tool 'bash'" in plan.turns[0].parse_error and "bash(" not in plan.system_prompt


async def test_native_tool_calls_are_rendered_as_tool_messages(backend):
    class NativePolicyDouble:
        native_tools = True

        def __init__(self):
            self.prompts = []

        async def chat(self, messages, tools, sampling):
            self.prompts.append(messages)
            assert [tool["function"]["name"] for tool in tools][:2] == ["bash", "view"]
            name, args = ("view", '{"path": "stats.py"}') if len(self.prompts) == 1 else ("submit", "{}")
            return Completion(text="", tool_calls=[{"id": f"call_{len(self.prompts)}", "type": "function",
                                                    "function": {"name": name, "arguments": args}}])

    policy = NativePolicyDouble()
    trajectory = await Agent(policy, backend).run("t")
    assert trajectory.outcome == "submitted" and trajectory.turns[0].tool_call.id == "call_1"
    assistant, tool = policy.prompts[1][-2:]
    assert assistant["tool_calls"][0]["function"] == {"name": "view", "arguments": '{"path": "stats.py"}'}
    assert tool["role"] == "tool" and tool["tool_call_id"] == "call_1" and "def mean" in tool["content"]


async def test_message_mode_compression_is_a_fork(backend, bug_repo: Path):
    (bug_repo / "big.txt").write_text("some text here\n" * 400)
    policy = ScriptedMessagePolicyDouble([], fallback=tool_call_text("view", path="big.txt"))
    config = AgentConfig(max_turns=8, context=ContextConfig(max_context_tokens=6000, max_observation_tokens=600,
                                                            keep_recent_turns=1))
    trajectory = await Agent(policy, backend, config).run("t")
    forks = [turn.index for turn in trajectory.turns if turn.fork]
    assert forks
    fork = trajectory.turns[forks[0]]
    assert any("[output omitted to save context" in str(m["content"]) for m in fork.prompt_messages)


def test_run_sync_and_type_errors(bug_repo: Path):
    backend = LocalBackend(bug_repo)
    trajectory = Agent(ScriptedMessagePolicyDouble([tool_call_text("submit")]), backend).run_sync("t")
    assert trajectory.outcome == "submitted" and trajectory.submission == ""
    with pytest.raises(TypeError, match="neither a TokenPolicy"):
        Agent(object(), backend)
    with pytest.raises(ValueError, match="unknown tool name"):
        Agent(ScriptedMessagePolicyDouble([]), backend, AgentConfig(tools=["bash", "nuke"]))
    with pytest.raises(ValueError, match="allowed fields"):
        asyncio.run(Agent(ScriptedMessagePolicyDouble([]), backend,
                          AgentConfig(system_prompt_template="{tool}")).run("t"))
