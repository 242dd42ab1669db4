"""Starting an episode from a recorded prefix (iflow.policy.prefix): the first k turns are replayed into a fresh copy
of the workspace, re-running their tool calls, then the live policy continues from the reproduced state."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from iflow_doubles import ScriptedTokenPolicyDouble, tool_call_text

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.policy.prefix import PrefixPolicy

FIX = {"path": "stats.py", "old_str": "(len(values) + 1)", "new_str": "len(values)"}


async def _recorded(bug_repo: Path, tokenizer):
    script = [tool_call_text("view", path="stats.py"), tool_call_text("str_replace", **FIX),
              tool_call_text("bash", command="grep -c 'len(values)' stats.py"), tool_call_text("submit")]
    async with LocalBackend(bug_repo) as backend:
        recorded = await Agent(ScriptedTokenPolicyDouble(tokenizer, script), backend).run("Fix it.")
    subprocess.run(["git", "checkout", "-q", "."], cwd=bug_repo, check=True)
    return recorded


async def test_prefix_replays_then_the_policy_continues_from_the_reproduced_state(bug_repo: Path, tokenizer):
    recorded = await _recorded(bug_repo, tokenizer)
    live = ScriptedTokenPolicyDouble(tokenizer, [tool_call_text("bash", command="grep -c 'len(values)' stats.py"),
                                                 tool_call_text("submit", summary="mine")])
    prefix = PrefixPolicy(recorded, 2, live)
    async with LocalBackend(bug_repo) as backend:
        resampled = await Agent(prefix, backend).run("Fix it.")
        fixed = (bug_repo / "stats.py").read_text()
    assert [t.replayed for t in resampled.turns] == [True, True, False, False]
    assert [t.completion_ids for t in resampled.turns[:2]] == [t.completion_ids for t in recorded.turns[:2]]
    assert [prefix.check(t) for t in resampled.turns] == [None] * 4
    assert "len(values)" in fixed and "(len(values) + 1)" not in fixed  # the replayed edit really ran
    assert len(live.prompts) == 2 and live.prompts[0] == resampled.turns[2].prompt_ids
    assert resampled.turns[2].observation == recorded.turns[2].observation  # same state as the recording
    assert resampled.outcome == "submitted" and "+    return sum(values) / len(values)" in resampled.submission
    assert resampled.turns[2].policy_version == 7
    assert resampled.turns[0].policy_version is None


async def test_a_prefix_whose_observation_differs_is_refused(bug_repo: Path, tokenizer):
    recorded = await _recorded(bug_repo, tokenizer)
    (bug_repo / "stats.py").write_text((bug_repo / "stats.py").read_text() + "\n# changed since the recording\n")
    prefix = PrefixPolicy(recorded, 2, ScriptedTokenPolicyDouble(tokenizer, []))

    async def stop_on_refusal(turn, trajectory):
        return prefix.check(turn)

    async with LocalBackend(bug_repo) as backend:
        refused = await Agent(prefix, backend, on_turn_end=stop_on_refusal).run("Fix it.")
    assert refused.outcome == "terminated" and len(refused.turns) == 1
    assert refused.metadata["termination_reason"].startswith("prefix refused: turn 0's observation differs")


def test_a_prefix_longer_than_the_recording_is_an_error(tokenizer):
    from iflow.trajectory import Trajectory

    with pytest.raises(ValueError, match="prefix of 1 turns"):
        PrefixPolicy(Trajectory(id="empty"), 1, ScriptedTokenPolicyDouble(tokenizer, []))
