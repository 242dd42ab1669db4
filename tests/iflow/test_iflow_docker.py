"""End to end in a real ROCK sandbox: a scripted policy views, edits, runs the tests and submits; the submitted diff
is exactly the fix, and every command the sandbox ran is attached to the turn that ran it."""
from __future__ import annotations

from pathlib import Path

import pytest
from iflow_doubles import ScriptedMessagePolicyDouble, ScriptedTokenPolicyDouble, tool_call_text

from iflow.agent import Agent
from iflow.config import AgentConfig
from iflow.trajectory import training_sequences
from iflow.workspace import populate_sandbox

pytestmark = pytest.mark.docker

FIX = {"path": "stats.py", "old_str": "(len(values) + 1)", "new_str": "len(values)"}
EXPECTED_DIFF = """\
diff --git a/stats.py b/stats.py
index {old}..{new} 100644
--- a/stats.py
+++ b/stats.py
@@ -1,3 +1,3 @@
 def mean(values):
     \"\"\"Arithmetic mean of a non-empty list.\"\"\"
-    return sum(values) / (len(values) + 1)
+    return sum(values) / len(values)
"""


def script() -> list[str]:
    return [
        tool_call_text("view", "First, the layout.\n", path="."),
        tool_call_text("bash", command="python3 -m pytest -q -p no:cacheprovider"),
        tool_call_text("view", path="stats.py", view_range=[3, 3]),
        tool_call_text("str_replace", **FIX),
        tool_call_text("bash", command="python3 -m pytest -q -p no:cacheprovider"),
        tool_call_text("submit", summary="mean divided by n + 1"),
    ]


async def sandbox_with(repo: Path):
    from rock import AsyncSandbox, SandboxConfig

    sandbox = await AsyncSandbox(SandboxConfig(command_timeout=60)).start()
    try:
        await sandbox.upload(repo, "/workspace")
    except BaseException:
        await sandbox.stop()
        raise
    return sandbox


async def test_scripted_bug_fix_in_a_real_sandbox(docker_sandbox_ready, bug_repo: Path):
    sandbox = await sandbox_with(bug_repo)
    try:
        trajectory = await Agent(ScriptedMessagePolicyDouble(script()), sandbox,
                                 AgentConfig(max_turns=10)).run("Make the tests pass.")
        records = sandbox.audit.since(0)
    finally:
        await sandbox.stop()
    assert trajectory.outcome == "submitted", trajectory.error
    turns = trajectory.turns
    assert "stats.py" in turns[0].observation and "test_stats.py" in turns[0].observation
    assert "1 failed" in turns[1].observation and "[exit code: 1]" in turns[1].observation
    assert turns[2].observation == "     3\t    return sum(values) / (len(values) + 1)"
    assert "1 passed" in turns[4].observation
    diff = trajectory.submission
    header = diff.splitlines()[1]
    old, new = header.split()[1].split("..")
    assert diff == EXPECTED_DIFF.format(old=old, new=new)
    assert all(turn.train_mask == 1 and not turn.tool_error for turn in turns)
    # the audit records of the sandbox are split by turn, and every record carries its turn tag
    for turn in turns:
        assert turn.commands, turn.index
        assert {record["tags"]["turn"] for record in turn.commands} == {turn.index}
    assert sum(len(turn.commands) for turn in turns) == len([r for r in records if "turn" in r.tags])
    assert "python3 -m pytest -q -p no:cacheprovider" in [r["command"] for r in turns[1].commands]


async def test_token_policy_in_a_sandbox_gives_exact_training_sequences(docker_sandbox_ready, bug_repo: Path,
                                                                        tokenizer):
    from rock import AsyncSandbox, SandboxConfig

    async with AsyncSandbox(SandboxConfig(command_timeout=60)) as sandbox:
        backend = await populate_sandbox(sandbox, bug_repo)  # as the CLI does: copy + baseline commit
        policy = ScriptedTokenPolicyDouble(tokenizer, script())
        trajectory = await Agent(policy, backend, AgentConfig(max_turns=10)).run("Make the tests pass.")
    assert trajectory.outcome == "submitted"
    assert "+    return sum(values) / len(values)" in trajectory.submission
    (sequence,) = training_sequences(trajectory)
    last = trajectory.turns[-1]
    assert sequence.input_ids == last.prompt_ids + last.completion_ids
    for turn in trajectory.turns:
        start = len(turn.prompt_ids)
        assert sequence.input_ids[start: start + len(turn.completion_ids)] == turn.completion_ids
        assert sequence.turn_ids[start: start + len(turn.completion_ids)] == [turn.index] * len(turn.completion_ids)


async def test_docker_workspace_round_trip(docker_sandbox_ready, tmp_path: Path):
    """What `iflow --sandbox docker` does: copy a plain directory (not a repository) in, let the agent edit the copy,
    bring the diff back with git apply; after applying, the sandbox's baseline moves so the next diff is empty."""
    from rock import AsyncSandbox, SandboxConfig

    from iflow.tools.base import ToolContext
    from iflow.tools.shell import workspace_diff
    from iflow.workspace import apply_patch, commit_baseline

    local = tmp_path / "project"
    (local / ".venv").mkdir(parents=True)
    (local / ".venv" / "junk").write_text("not copied")
    (local / "stats.py").write_text("def mean(values):\n    return sum(values) / (len(values) + 1)\n")
    async with AsyncSandbox(SandboxConfig(command_timeout=60)) as sandbox:
        backend = await populate_sandbox(sandbox, local)
        listing = await backend.run("ls -A /workspace", timeout=30)
        assert ".venv" not in listing.output.split() and "stats.py" in listing.output
        script = [tool_call_text("str_replace", **FIX), tool_call_text("create", path="README", file_text="hi\n"),
                  tool_call_text("submit")]
        trajectory = await Agent(ScriptedMessagePolicyDouble(script), backend).run("Fix it.")
        diff = await workspace_diff(ToolContext(backend))
        assert diff == trajectory.submission and "+hi" in diff
        apply_patch(diff, local)
        await commit_baseline(backend, "iflow applied")
        assert await workspace_diff(ToolContext(backend)) == ""
    assert (local / "stats.py").read_text() == "def mean(values):\n    return sum(values) / len(values)\n"
    assert (local / "README").read_text() == "hi\n" and not (local / ".git").exists()
