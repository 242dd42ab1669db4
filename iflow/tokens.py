"""Token counting and chat-template rendering for token-level policies.

`ChatTemplateRenderer` learns, once, how the tokenizer's chat template frames each message (by rendering a probe
conversation with placeholder texts), so that a turn can be appended to a prompt as tokens without re-rendering or
re-tokenizing what came before: next prompt = previous prompt + the model's own completion ids + bridge ids.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

OMISSION = "\n[... {count} {unit} of output cut ...]\n"


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def head_tail(self, text: str, max_tokens: int) -> str: ...


class ApproxCounter:
    """For policies without a tokenizer (HTTP): a conservative estimate of `chars_per_token` characters per token."""

    def __init__(self, chars_per_token: float = 3.0) -> None:
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def head_tail(self, text: str, max_tokens: int) -> str:
        if self.count(text) <= max_tokens:
            return text
        keep = max(0, int(max_tokens * self.chars_per_token) - 48) // 2
        return text[:keep] + OMISSION.format(count=len(text) - 2 * keep, unit="characters") + text[len(text) - keep:]


class TokenizerCounter:
    """Counts and cuts text as the model will see it. `encode` is for text that is not the chat template's own
    framing (observations, tasks, user and system messages, the model's text): special-token text in it, such as
    an observation holding `<|im_end|>` or `<|im_start|>system`, stays plain characters and can never become a real
    special token (a forged role boundary). `encode_template` parses special tokens: for the template's framing only.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True,
                                   verbose=False)["input_ids"])

    def encode_template(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=False,
                                   verbose=False)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def head_tail(self, text: str, max_tokens: int) -> str:
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        keep = max(0, max_tokens - 24) // 2  # room for the marker and re-tokenization at the seams
        head = self.tokenizer.decode(ids[:keep])
        tail = self.tokenizer.decode(ids[len(ids) - keep:]) if keep else ""
        return head + OMISSION.format(count=len(ids) - 2 * keep, unit="tokens") + tail


class TemplateNotIncremental(ValueError):
    """The chat template does not render a conversation as a plain concatenation of message blocks."""


class TemplateAltersContent(ValueError):
    """The chat template does not put message contents into the prompt verbatim (fail closed: no prompt)."""


_PROBE = {"system": "qzSYSTEMqz", "user": "qzUSERONEqz", "assistant": "qzASSISTANTqz", "user2": "qzUSERTWOqz"}


class ChatTemplateRenderer:
    def __init__(self, tokenizer: Any, tools: list[dict[str, Any]] | None = None) -> None:
        self.tokenizer = tokenizer
        self.tools = tools
        self.counter = TokenizerCounter(tokenizer)
        self.incremental = True
        try:
            self._probe()
        except TemplateNotIncremental:
            self.incremental = False  # every turn is then re-rendered (and recorded as a fork)

    def text(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        kwargs = {"tools": self.tools} if self.tools else {}
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt, **kwargs)

    def render(self, messages: list[dict[str, Any]]) -> list[int]:
        """The full prompt for `messages`, ending with the assistant header. The template's framing is tokenized
        with special tokens, every message's content as plain text (see `TokenizerCounter`): the template is
        rendered with a placeholder for each content, and the pieces between placeholders are the framing."""
        contents = [message.get("content") for message in messages]
        placeholders = [f"qzCONTENT{index}qz" if isinstance(content, str) else None
                        for index, content in enumerate(contents)]
        stand_ins = [{**message, "content": placeholder} if placeholder else message
                     for message, placeholder in zip(messages, placeholders)]
        framed = self.text(stand_ins)
        pieces = [(placeholder, content) for placeholder, content in zip(placeholders, contents) if placeholder]
        if any(framed.count(placeholder) != 1 for placeholder, _ in pieces):
            raise TemplateAltersContent("the chat template changes message contents; cannot tell them from its "
                                        "framing to tokenize them safely")
        ids, rest = [], framed
        for placeholder, content in sorted(pieces, key=lambda piece: framed.index(piece[0])):
            before, rest = rest.split(placeholder, 1)
            ids += self.counter.encode_template(before) + self.counter.encode(content)
        return ids + self.counter.encode_template(rest)

    def _probe(self) -> None:
        p = _PROBE
        base = [{"role": "system", "content": p["system"]}, {"role": "user", "content": p["user"]}]
        with_assistant = [*base, {"role": "assistant", "content": p["assistant"]}]
        with_user = [*with_assistant, {"role": "user", "content": p["user2"]}]
        t1, t1g = self.text(base, False), self.text(base, True)
        t2, t3, t4 = self.text(with_assistant, False), self.text(with_user, False), self.text(with_user, True)
        if not (t1g.startswith(t1) and t2.startswith(t1) and t3.startswith(t2) and t4.startswith(t3)):
            raise TemplateNotIncremental("rendering a longer conversation does not extend the shorter one")
        self.generation_prompt = t1g[len(t1):]
        assistant_block = t2[len(t1):]
        if not assistant_block.startswith(self.generation_prompt + p["assistant"]) or t4[len(t3):] != \
                self.generation_prompt:
            raise TemplateNotIncremental("the assistant block is not generation prompt + content + close")
        self.assistant_close = assistant_block[len(self.generation_prompt) + len(p["assistant"]):]
        user_block = t3[len(t2):]
        if user_block.count(p["user2"]) != 1:
            raise TemplateNotIncremental("the user block does not contain its content exactly once")
        self.user_prefix, self.user_suffix = user_block.split(p["user2"])
        close_ids = self.counter.encode_template(self.assistant_close)
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        self.end_of_turn_id = close_ids[0] if close_ids and close_ids[0] in special else None
        self.end_of_turn_text = self.tokenizer.decode([self.end_of_turn_id]) if self.end_of_turn_id is not None else ""
        if not self.assistant_close.startswith(self.end_of_turn_text):
            self.end_of_turn_id, self.end_of_turn_text = None, ""

    def bridge(self, completion_ids: list[int], user_contents: list[str]) -> list[int]:
        """Tokens after a completion: close the assistant turn (adding the end-of-turn token when the completion
        did not end with it), then each user message, then the next assistant header."""
        if not self.incremental:
            raise TemplateNotIncremental("this chat template cannot be extended incrementally")
        close = self.assistant_close
        if self.end_of_turn_id is not None and completion_ids and completion_ids[-1] == self.end_of_turn_id:
            close = close[len(self.end_of_turn_text):]
        ids, framing = [], close
        for content in user_contents:  # the same pieces as `render`: framing between contents, then contents
            ids += self.counter.encode_template(framing + self.user_prefix) + self.counter.encode(content)
            framing = self.user_suffix
        return ids + self.counter.encode_template(framing + self.generation_prompt)
