"""Turn a model completion into at most one tool call, or a message saying exactly what was wrong with it.

Two wire formats: the Qwen/Hermes text convention `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` and
native OpenAI `tool_calls` returned by an HTTP server. Parsing never raises: every malformed input becomes a
`ParsedCompletion` with `error` set, which the agent feeds back to the model as an observation.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from iflow.trajectory import ToolCall

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
FORMAT_HINT = f'Write exactly one call as {OPEN_TAG}{{"name": "<tool>", "arguments": {{...}}}}{CLOSE_TAG}.'
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_MAX_ECHO = 200  # characters of the offending text quoted back in an error


@dataclass(frozen=True)
class ParsedCompletion:
    """`call` is set when exactly one well-formed call was found; `error` when a call was attempted but is broken.
    Both are None when the completion is plain text with no attempt at a call."""

    call: ToolCall | None
    error: str | None
    content: str  # the text outside the tool call (the model's reasoning / answer)


def _echo(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO // 2] + " ... " + text[-_MAX_ECHO // 2:]


def call_from_payload(payload: Any, call_id: str | None = None) -> ToolCall:
    """Validate the decoded JSON of one call. Raises ValueError with a message meant for the model."""
    if not isinstance(payload, dict):
        raise ValueError(f"the tool call must be a JSON object, got {type(payload).__name__}")
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError('the tool call has no "name" string')
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise ValueError(f'"arguments" of {name!r} is a string that is not valid JSON: {exc}') from None
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f'"arguments" of {name!r} must be a JSON object, got {type(arguments).__name__}')
    return ToolCall(name=name.strip(), arguments=arguments, id=call_id)


def _decode_json(body: str) -> Any:
    body = body.strip()
    if body.startswith("```"):  # tolerate a fenced block inside the tags
        body = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", body)
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("the tool call JSON is nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"the tool call is not valid JSON ({exc}): {_echo(body)!r}") from None


def parse_text(text: str) -> ParsedCompletion:
    """Parse the Hermes text convention. Exactly one `<tool_call>` block is allowed per completion."""
    try:
        return _parse_text(text)
    except Exception as exc:  # noqa: BLE001 - the contract is that parsing never raises
        return ParsedCompletion(None, f"could not parse the completion ({type(exc).__name__}: {exc}). {FORMAT_HINT}",
                                text if isinstance(text, str) else "")


def _parse_text(text: str) -> ParsedCompletion:
    visible = _THINK.sub("", text)
    starts = [m.start() for m in re.finditer(re.escape(OPEN_TAG), visible)]
    if not starts:
        if CLOSE_TAG in visible:
            return ParsedCompletion(None, f"found {CLOSE_TAG} without an opening {OPEN_TAG}. {FORMAT_HINT}", visible)
        return ParsedCompletion(None, None, visible.strip())
    if len(starts) > 1:
        return ParsedCompletion(None, f"found {len(starts)} {OPEN_TAG} tags; call exactly one tool per turn. "
                                      f"{FORMAT_HINT}", visible)
    start = starts[0]
    body_start = start + len(OPEN_TAG)
    end = visible.find(CLOSE_TAG, body_start)
    content = visible[:start]
    if end < 0:  # unterminated: accept only if a complete JSON object follows
        body = visible[body_start:].strip()
        try:
            payload, consumed = json.JSONDecoder().raw_decode(body)
        except RecursionError:
            return ParsedCompletion(None, f"the tool call JSON is nested too deeply. {FORMAT_HINT}", content)
        except ValueError:
            return ParsedCompletion(None, f"{OPEN_TAG} is not closed and the JSON after it is incomplete: "
                                          f"{_echo(body)!r}. {FORMAT_HINT}", content)
        if body[consumed:].strip():
            return ParsedCompletion(None, f"{OPEN_TAG} is not closed. {FORMAT_HINT}", content)
    else:
        content += visible[end + len(CLOSE_TAG):]
        try:
            payload = _decode_json(visible[body_start:end])
        except ValueError as exc:
            return ParsedCompletion(None, f"{exc}. {FORMAT_HINT}", content)
    try:
        call = call_from_payload(payload)
    except ValueError as exc:
        return ParsedCompletion(None, f"{exc}. {FORMAT_HINT}", content)
    return ParsedCompletion(call, None, content.strip())


def parse_native(tool_calls: list[dict[str, Any]], text: str = "") -> ParsedCompletion:
    """Parse OpenAI `tool_calls` ([{id, type, function: {name, arguments: "<json>"}}])."""
    try:
        if len(tool_calls) != 1:
            return ParsedCompletion(None, f"got {len(tool_calls)} tool calls; call exactly one tool per turn", text)
        raw = tool_calls[0]
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict):
            return ParsedCompletion(None, "the tool call has no function object", text)
        call = call_from_payload({"name": function.get("name"), "arguments": function.get("arguments") or {}},
                                 call_id=raw.get("id") or "call_0")
        return ParsedCompletion(call, None, text.strip())
    except ValueError as exc:
        return ParsedCompletion(None, str(exc), text)
    except Exception as exc:  # noqa: BLE001 - parsing never raises
        return ParsedCompletion(None, f"could not parse the tool call ({type(exc).__name__}: {exc})", text)


def parse_completion(text: str, tool_calls: list[dict[str, Any]] | None = None) -> ParsedCompletion:
    """Native calls win when the server returned any; otherwise the text convention."""
    if tool_calls:
        return parse_native(tool_calls, text)
    return parse_text(text)


def render_call(call: ToolCall) -> str:
    """The canonical text form of a call (used when a native call must be shown as text)."""
    payload = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"{OPEN_TAG}\n{payload}\n{CLOSE_TAG}"
