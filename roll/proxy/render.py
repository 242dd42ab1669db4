"""OpenAI messages (+ tools) -> prompt token ids, with the checkpoint's own chat template.

Message contents are tokenized as plain text, never parsing special tokens (an agent's tool output holding
`<|im_end|>` cannot forge a role boundary); only the template's framing is tokenized with special tokens, as in
`iflow.tokens.ChatTemplateRenderer`. When a request continues the previous one (same history, then the assistant
message the proxy returned, then new messages) the prompt is spliced: previous prompt + the model's own completion
ids + the tokens of what follows, so the model's tokens are never re-tokenized. Otherwise it is rendered whole."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iflow.tokens import ChatTemplateRenderer, TemplateNotIncremental, TokenizerCounter


class RenderError(ValueError):
    """The request cannot be rendered into a prompt (bad messages, a template that changes contents)."""


@dataclass(frozen=True)
class Continuation:
    """What a new request may extend: the previous request's messages, tools and exact tokens."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    prompt_ids: list[int]
    completion_ids: list[int]
    response_message: dict[str, Any]


def content_text(content: Any) -> str | None:
    """OpenAI content: a string, None, or a list of parts ({"type": "text", "text": ...})."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RenderError("only text content parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise RenderError(f"message content must be a string or a list of text parts, not {type(content).__name__}")


def _arguments(call: dict[str, Any]) -> Any:
    raw = (call.get("function") or {}).get("arguments")
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw or {}


def normalize_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise RenderError("every message must be an object with a string role")
    out: dict[str, Any] = {"role": message["role"], "content": content_text(message.get("content"))}
    if message.get("tool_calls"):
        calls = message["tool_calls"]
        if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("function"), dict)
                                                  for c in calls):
            raise RenderError("tool_calls must be a list of {function: {name, arguments}}")
        out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                              "function": {"name": c["function"].get("name"), "arguments": _arguments(c)}}
                             for c in calls]
    for key in ("tool_call_id", "name"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out


def same_assistant(sent: dict[str, Any], returned: dict[str, Any]) -> bool:
    """Is the assistant message a client sent back the one the proxy returned (modulo whitespace and ids)?"""
    if sent.get("role") != "assistant":
        return False
    if (sent.get("content") or "").strip() != (returned.get("content") or "").strip():
        return False
    calls = lambda m: [(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls") or []]
    return calls(sent) == calls(returned)


class PromptRenderer:
    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.counter = TokenizerCounter(tokenizer)
        self._probes: dict[str, ChatTemplateRenderer] = {}

    def _probe(self, tools: list[dict[str, Any]] | None) -> ChatTemplateRenderer:
        key = json.dumps(tools, sort_keys=True)
        if key not in self._probes:
            self._probes[key] = ChatTemplateRenderer(self.tokenizer, tools)
        return self._probes[key]

    def _template(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                  generation_prompt: bool) -> str:
        kwargs = {"tools": tools} if tools else {}
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=generation_prompt, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a template error is the request's fault
            raise RenderError(f"the chat template cannot render this conversation: {exc}") from None

    @staticmethod
    def _placeholders(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        stand_ins, contents = [], {}
        for index, message in enumerate(messages):
            if isinstance(message.get("content"), str):
                placeholder = f"qzCONTENT{index}qz"
                contents[placeholder] = message["content"]
                message = {**message, "content": placeholder}
            stand_ins.append(message)
        return stand_ins, contents

    def _tokenize(self, framed: str, contents: dict[str, str]) -> list[int]:
        present = [p for p in contents if p in framed]
        if any(framed.count(p) != 1 for p in present):
            raise RenderError("the chat template repeats a message content; cannot tokenize it safely")
        ids, rest = [], framed
        for placeholder in sorted(present, key=framed.index):
            before, rest = rest.split(placeholder, 1)
            ids += self.counter.encode_template(before) + self.counter.encode(contents[placeholder])
        return ids + self.counter.encode_template(rest)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> list[int]:
        """The whole conversation, ending with the assistant header."""
        stand_ins, contents = self._placeholders(messages)
        return self._tokenize(self._template(stand_ins, tools, True), contents)

    def splice(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               previous: Continuation) -> list[int] | None:
        """previous prompt + completion ids + the new messages' tokens, or None when `messages` does not continue
        `previous` exactly as the template would render it."""
        n = len(previous.messages)
        if tools != previous.tools or len(messages) <= n + 1 or messages[:n] != previous.messages \
                or not same_assistant(messages[n], previous.response_message):
            return None
        try:
            probe = self._probe(tools)
        except TemplateNotIncremental:
            return None
        if not probe.incremental:
            return None
        stand_ins, contents = self._placeholders(messages)
        before = self._template(stand_ins[:n], tools, True)
        history = self._template(stand_ins[: n + 1], tools, False)
        full = self._template(stand_ins, tools, True)
        close = probe.assistant_close
        if not (history.startswith(before) and full.startswith(history) and history.endswith(close)):
            return None  # the template re-renders earlier messages: no exact extension exists
        completion = previous.completion_ids
        if probe.end_of_turn_id is not None and completion and completion[-1] == probe.end_of_turn_id:
            close = close[len(probe.end_of_turn_text):]
        bridge = self._tokenize(close + full[len(history):], contents)
        return [*previous.prompt_ids, *completion, *bridge]

    def encode_raw(self, prompt: str) -> list[int]:
        """A /v1/completions prompt: the client's own text, special tokens included (it is the whole prompt)."""
        return self.counter.encode_template(prompt)
