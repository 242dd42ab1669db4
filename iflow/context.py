"""The context manager: what the model sees each turn, under a token budget.

The system prompt and the task are always kept. Observations are cut to head + tail when they enter the history.
When the prompt passes `compress_threshold` of the budget, older turns are compressed, oldest first, until the
estimate is under `compress_target`: first their observations become stubs, then their assistant messages, then
they are dropped. Compression levels only ever grow, and depend on nothing but the history and the configuration,
so the same inputs give the same context in training and in use.

Token mode (a `ChatTemplateRenderer`): each prompt extends the previous prompt + the model's own completion ids
verbatim; only when compression rewrites history is the prompt re-rendered from messages, and that turn is a fork.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from iflow.config import ContextConfig
from iflow.tokens import ApproxCounter, ChatTemplateRenderer, TokenCounter
from iflow.trajectory import ToolCall

FULL, OBSERVATION_STUB, TURN_STUB, DROPPED = 0, 1, 2, 3
MESSAGE_OVERHEAD = 4  # tokens a chat template adds around each message, for estimates


class ContextOverflow(RuntimeError):
    pass


@dataclass
class Exchange:
    """One assistant turn and the observation that followed it (None: nothing followed)."""

    index: int
    completion_text: str
    completion_ids: list[int] = field(default_factory=list)
    call: ToolCall | None = None  # a call with an `id` came natively (OpenAI tool_calls)
    observation: str | None = None
    user_input: str | None = None  # a user message that came before this turn


@dataclass
class BuiltPrompt:
    messages: list[dict[str, Any]] | None  # None when token mode extended the previous prompt
    ids: list[int] | None  # token mode only
    fork: bool             # history was re-rendered: this prompt does not extend the previous prompt + completion
    tokens: int


def wrap_observation(text: str) -> str:
    return f"<tool_response>\n{text}\n</tool_response>"


def observation_stub(text: str) -> str:
    return f"[output omitted to save context: {text.count(chr(10)) + 1} lines]"


def turn_stub(exchange: Exchange) -> str:
    action = f"called {exchange.call.name}" if exchange.call else "no tool call"
    return f"[turn {exchange.index}: {action}]"


class ContextManager:
    def __init__(self, system_prompt: str, task: str, config: ContextConfig | None = None,
                 renderer: ChatTemplateRenderer | None = None, counter: TokenCounter | None = None,
                 reserved_tokens: int = 0) -> None:
        self.system_prompt = system_prompt
        self.task = task
        self.config = config or ContextConfig()
        self.renderer = renderer
        self.counter: TokenCounter = renderer.counter if renderer else (counter or ApproxCounter())
        self.reserved_tokens = reserved_tokens  # prompt tokens we do not render (e.g. tool schemas a server adds)
        self.exchanges: list[Exchange] = []
        self.levels: list[int] = []
        self._ids: list[int] | None = None            # token mode: the last prompt built
        self._built_levels: list[int] | None = None   # compression levels of the last prompt built
        self._pending_input: str | None = None
        self._sizes: dict[tuple[int, int], int] = {}

    # ---- history ---------------------------------------------------------------------------------------------
    def cut_observation(self, text: str) -> str:
        return self.counter.head_tail(text, self.config.max_observation_tokens)

    def add(self, exchange: Exchange) -> None:
        """Record a finished turn (its observation already cut with `cut_observation`)."""
        if exchange.user_input is None:
            exchange.user_input = self._pending_input
        self._pending_input = None
        self.exchanges.append(exchange)
        self.levels.append(FULL)

    # ---- rendering -------------------------------------------------------------------------------------------
    def messages(self, levels: list[int] | None = None, user_input: str | None = None) -> list[dict[str, Any]]:
        levels = self.levels if levels is None else levels
        dropped = sum(1 for level in levels if level == DROPPED)
        task = self.task + (f"\n\n[{dropped} earlier turns omitted to save context]" if dropped else "")
        out: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        _add_user(out, task)
        for exchange, level in zip(self.exchanges, levels):
            if exchange.user_input:
                _add_user(out, exchange.user_input)
            if level == DROPPED:
                continue
            observation = exchange.observation
            if level >= OBSERVATION_STUB and observation is not None:
                observation = observation_stub(observation)
            if level == TURN_STUB:
                out.append({"role": "assistant", "content": turn_stub(exchange)})
                if observation is not None:
                    _add_user(out, wrap_observation(observation))
            elif exchange.call is not None and exchange.call.id is not None:  # native tool call
                call = {"id": exchange.call.id, "type": "function", "function": {
                    "name": exchange.call.name, "arguments": json.dumps(exchange.call.arguments, ensure_ascii=False)}}
                out.append({"role": "assistant", "content": exchange.completion_text or None, "tool_calls": [call]})
                if observation is not None:
                    out.append({"role": "tool", "tool_call_id": exchange.call.id, "content": observation})
            else:
                out.append({"role": "assistant", "content": exchange.completion_text})
                if observation is not None:
                    _add_user(out, wrap_observation(observation))
        if user_input:
            _add_user(out, user_input)
        return out

    def build(self, user_input: str | None = None) -> BuiltPrompt:
        """The prompt for the next turn; `user_input` is a user message that arrives before it."""
        self._pending_input = user_input
        budget = self.config.max_context_tokens
        prompt = self._render(user_input)
        if prompt.tokens > self.config.compress_threshold * budget:
            before = list(self.levels)
            self._escalate(self.config.compress_target * budget, soft=True)
            if self.levels != before:
                prompt = self._render(user_input)
            while prompt.tokens > budget:
                goal = self._estimate(self.levels, user_input) - (prompt.tokens - budget) - MESSAGE_OVERHEAD
                if not self._escalate(goal, soft=False):
                    raise ContextOverflow(
                        f"the prompt needs {prompt.tokens} tokens even with all history compressed; "
                        f"max_context_tokens is {budget} (the system prompt, task and latest turn must fit)")
                prompt = self._render(user_input)
        self._ids, self._built_levels = prompt.ids, list(self.levels)
        return prompt

    def _render(self, user_input: str | None) -> BuiltPrompt:
        previous = self._built_levels
        if self.renderer is None:
            fork = previous is not None and self.levels[: len(previous)] != previous
            return BuiltPrompt(self.messages(user_input=user_input), None, fork,
                               self._estimate(self.levels, user_input))
        if self._ids is not None and self.renderer.incremental and previous is not None \
                and self.levels[:-1] == previous and len(self.exchanges) == len(previous) + 1:
            last = self.exchanges[-1]
            contents = [wrap_observation(last.observation)] if last.observation is not None else []
            if user_input:
                contents.append(user_input)
            bridge = self.renderer.bridge(last.completion_ids, ["\n\n".join(contents)] if contents else [])
            ids = self._ids + last.completion_ids + bridge
            return BuiltPrompt(None, ids, False, len(ids))  # messages are not needed to extend the tokens
        messages = self.messages(user_input=user_input)
        ids = self.renderer.render(messages)
        return BuiltPrompt(messages, ids, previous is not None, len(ids))

    # ---- compression -----------------------------------------------------------------------------------------
    def _size(self, position: int, level: int) -> int:
        """Estimated tokens of exchange `position` rendered at `level` (cached)."""
        key = (position, level)
        if key not in self._sizes:
            exchange = self.exchanges[position]
            size = self.counter.count(exchange.user_input) + MESSAGE_OVERHEAD if exchange.user_input else 0
            observation = exchange.observation
            if level >= OBSERVATION_STUB and observation is not None:
                observation = observation_stub(observation)
            if level == DROPPED:
                pass
            elif level == TURN_STUB:
                size += self.counter.count(turn_stub(exchange)) + MESSAGE_OVERHEAD
            else:
                size += (len(exchange.completion_ids) if exchange.completion_ids and self.renderer
                         else self.counter.count(exchange.completion_text)) + MESSAGE_OVERHEAD
                if exchange.call is not None and exchange.call.id is not None:
                    size += self.counter.count(json.dumps(exchange.call.arguments)) + MESSAGE_OVERHEAD
            if observation is not None and level != DROPPED:
                size += self.counter.count(wrap_observation(observation)) + MESSAGE_OVERHEAD
            self._sizes[key] = size
        return self._sizes[key]

    def _estimate(self, levels: list[int], user_input: str | None = None) -> int:
        fixed = self.counter.count(self.system_prompt) + self.counter.count(self.task) + 2 * MESSAGE_OVERHEAD \
            + self.reserved_tokens
        if any(level == DROPPED for level in levels):
            fixed += 12
        if user_input:
            fixed += self.counter.count(user_input) + MESSAGE_OVERHEAD
        return fixed + sum(self._size(position, level) for position, level in enumerate(levels))

    def _steps(self, soft: bool) -> Iterator[tuple[int, int]]:
        """Compression steps in their fixed order: older turns first, mildest level first. The newest
        `keep_recent_turns` are touched only to meet the hard budget (`soft=False`)."""
        count = len(self.exchanges)
        older = range(max(0, count - self.config.keep_recent_turns))
        groups = [older] if soft else [older, range(count)]
        for positions in groups:
            for level in (OBSERVATION_STUB, TURN_STUB, DROPPED):
                for position in positions:
                    if self.levels[position] < level:
                        yield position, level

    def _escalate(self, goal: float, soft: bool) -> bool:
        """Apply steps until the estimate is <= goal. Returns whether any step was applied."""
        applied = False
        estimate = self._estimate(self.levels, self._pending_input)
        for position, level in self._steps(soft):
            if estimate <= goal:
                break
            saving = self._size(position, self.levels[position]) - self._size(position, level)
            if self.levels[position] >= level or saving <= 0:  # a stub longer than what it replaces: skip
                continue
            estimate -= saving
            self.levels[position] = level
            applied = True
        return applied


def _add_user(messages: list[dict[str, Any]], content: str) -> None:
    """Append a user message, merging into the previous one when that is also a user message."""
    if messages and messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": messages[-1]["content"] + "\n\n" + content}
    else:
        messages.append({"role": "user", "content": content})
