"""Token-exact trajectories from a session's recorded calls: the same `Trajectory`/`Turn` records the iFlow loop
writes, one turn per completed model call, so IPA trains on them unchanged.

A turn whose prompt does not extend the previous turn's prompt + completion token for token (the agent rewrote its
history, or the chat template re-renders earlier messages differently) is marked `fork`: it starts a new training
sequence (`iflow.trajectory.training_sequences`), so no token is ever trained in a context the model did not see."""
from __future__ import annotations

from typing import Any

from iflow.parsing import parse_text
from iflow.trajectory import Trajectory, Turn
from roll.proxy.records import ProxyCall


def extends(prompt_ids: list[int], previous: Turn) -> bool:
    head = [*(previous.prompt_ids or []), *previous.completion_ids]
    return len(prompt_ids) >= len(head) and prompt_ids[: len(head)] == head


def _observation(call: ProxyCall, following: ProxyCall | None) -> str:
    """What the agent reported back after this call: the tool/user messages the next request added after the
    assistant message this call returned."""
    if following is None or following.messages is None or call.messages is None:
        return ""
    n = len(call.messages) + 1
    if len(following.messages) < n or following.messages[: n - 1] != call.messages:
        return ""
    return "\n".join(m.get("content") or "" for m in following.messages[n:] if m.get("role") in ("tool", "user"))


def served_tool_call(call: ProxyCall) -> tuple[Any, str | None]:
    """The call's tool call: the one the proxy returned natively, or (a client that declared no tools and parses
    `<tool_call>` text itself, as `iflow --tool-format hermes`) the one in the text; plus the parse error."""
    if call.tool_call is not None or call.tools:
        return call.tool_call, call.parse_error
    parsed = parse_text(call.completion_text)
    return parsed.call, parsed.error


def build_turns(calls: list[ProxyCall]) -> list[Turn]:
    served = sorted((c for c in calls if c.status == "ok" and c.completion_ids), key=lambda c: c.seq)
    turns: list[Turn] = []
    for index, call in enumerate(served):
        fork = bool(turns) and not extends(call.prompt_ids, turns[-1])
        tool_call, parse_error = served_tool_call(call)
        following = served[index + 1] if index + 1 < len(served) else None
        turns.append(Turn(index=index, prompt_ids=list(call.prompt_ids), fork=fork,
                          completion_text=call.completion_text, completion_ids=list(call.completion_ids),
                          logprobs=list(call.logprobs), policy_version=call.policy_version,
                          finish_reason=call.finish_reason, tool_call=tool_call, parse_error=parse_error,
                          observation=_observation(call, following), timings=dict(call.timings)))
    return turns


def proxy_summary(calls: list[ProxyCall]) -> dict[str, Any]:
    """The audit of every call (served or not) and counts, for the trajectory's metadata."""
    ordered = sorted(calls, key=lambda c: c.seq)
    statuses: dict[str, int] = {}
    for call in ordered:
        statuses[call.status] = statuses.get(call.status, 0) + 1
    return {"calls": [c.audit_line() for c in ordered], "statuses": statuses,
            "spliced": sum(c.prompt_source == "spliced" for c in ordered)}


def build_trajectory(calls: list[ProxyCall], *, trajectory_id: str, task_id: str = "", task: str = "",
                     metadata: dict[str, Any] | None = None) -> Trajectory:
    turns = build_turns(calls)
    meta = {**(metadata or {}), "agent": "blackbox", "proxy": proxy_summary(calls)}
    meta["proxy"]["forks"] = sum(t.fork for t in turns)
    return Trajectory(id=trajectory_id, task_id=task_id, task=task, turns=turns, metadata=meta,
                      parse_errors=sum(t.parse_error is not None for t in turns))
