"""The agent loop: build the prompt, ask the policy, parse one tool call, run it, record the turn. Repeat until the
model submits or a limit is hit. The same loop serves training (a TokenPolicy in a ROCK sandbox) and use (an HTTP
policy in the user's directory); it knows nothing of training."""
from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from iflow.backends.rock_backend import as_backend
from iflow.config import AgentConfig
from iflow.context import ContextManager, ContextOverflow, Exchange
from iflow.observer import AgentObserver
from iflow.parsing import FORMAT_HINT, parse_completion
from iflow.policy.base import Completion
from iflow.policy.errors import PolicyError
from iflow.prompts import build_system_prompt, load_project_context
from iflow.tokens import ApproxCounter, ChatTemplateRenderer, TokenCounter
from iflow.tools import ToolContext, ToolRegistry, ToolResult
from iflow.trajectory import ToolCall, Trajectory, Turn

TurnHook = Callable[[Turn, Trajectory], Awaitable[str | None]]
Approver = Callable[[ToolCall], Awaitable[bool | str]]


class EpisodeTimeout(Exception):
    pass


def is_token_policy(policy: Any) -> bool:
    return callable(getattr(policy, "generate", None)) and getattr(policy, "tokenizer", None) is not None


class Agent:
    def __init__(self, policy: Any, tools_backend: Any, config: AgentConfig | None = None, *,
                 on_turn_end: TurnHook | None = None, approver: Approver | None = None,
                 observer: AgentObserver | None = None, counter: TokenCounter | None = None) -> None:
        self.policy = policy
        self.backend = as_backend(tools_backend)
        self.config = config or AgentConfig()
        self.on_turn_end = on_turn_end
        self.approver = approver
        self.observer = observer or AgentObserver()
        self.counter = counter  # message policies: how to count tokens (default: a conservative estimate)
        self.token_level = is_token_policy(policy)
        if not self.token_level and not callable(getattr(policy, "chat", None)):
            raise TypeError(f"{type(policy).__name__} is neither a TokenPolicy (generate + tokenizer) nor a "
                            "MessagePolicy (chat)")
        self.registry = ToolRegistry.from_names(self.config.tools, read_only=self.config.approval_mode == "plan")
        template_tools = self.registry.schemas() if self.config.template_renders_tools else None
        self.renderer = ChatTemplateRenderer(policy.tokenizer, template_tools) if self.token_level else None
        self._streams = not self.token_level and "on_delta" in inspect.signature(policy.chat).parameters

    def run_sync(self, task: str, **kwargs: Any) -> Trajectory:
        return asyncio.run(self.run(task, **kwargs))

    async def system_prompt(self) -> str:
        project = await load_project_context(self.backend, self.config.project_file) if self.config.project_file \
            else None
        schemas = [] if self.config.template_renders_tools else self.registry.schemas()
        return build_system_prompt(schemas, self.backend.workdir, project, self.config.system_prompt_template)

    async def run(self, task: str, *, task_id: str = "", trajectory_id: str | None = None, group_id: str | None = None,
                  metadata: dict[str, Any] | None = None, resume: Trajectory | None = None) -> Trajectory:
        """Run one episode on `task`. With `resume`, continue that trajectory with `task` as a new user message."""
        started = time.monotonic()
        deadline = started + self.config.max_wall_seconds
        if resume is not None:
            traj = resume.model_copy(deep=True)
            traj.outcome, traj.error = "running", None
            user_input: str | None = task
        else:
            traj = Trajectory(id=trajectory_id or uuid.uuid4().hex, task_id=task_id, group_id=group_id, task=task,
                              system_prompt=await self.system_prompt(), metadata=dict(metadata or {}))
            traj.metadata.setdefault("tools", list(self.registry.tools))
            user_input = None
        context = self._context(traj)
        first_turn = len(traj.turns)  # limits count this run's turns only (a resumed session gets a fresh budget)
        try:
            while traj.outcome == "running":
                limit = self._limit_reached(traj.turns[first_turn:], started)
                if limit:
                    traj.outcome = limit
                    break
                turn = await self._step(context, traj, user_input, deadline)
                user_input = None
                if self.on_turn_end is not None:
                    reason = await self.on_turn_end(turn, traj)
                    if reason:
                        traj.outcome = "terminated"
                        traj.metadata["termination_reason"] = reason
        except ContextOverflow as exc:
            traj.outcome, traj.error = "max_tokens", str(exc)
        except EpisodeTimeout as exc:
            traj.outcome, traj.error = "timeout", str(exc)
        except PolicyError as exc:
            traj.outcome, traj.error = "error", str(exc)
        except Exception as exc:  # noqa: BLE001 - a rollout gets an errored trajectory, not a dead worker
            traj.outcome, traj.error = "error", f"{type(exc).__name__}: {exc}"
            traj.metadata["traceback"] = traceback.format_exc()
        traj.timings["total"] = traj.timings.get("total", 0.0) + time.monotonic() - started
        self.observer.on_episode_end(traj)
        return traj

    def _context(self, traj: Trajectory) -> ContextManager:
        """A context manager holding `traj`'s history, rebuilt turn by turn so compression replays exactly."""
        reserved = 0
        if not self.token_level and getattr(self.policy, "native_tools", None) is not False:
            counter = self.counter or ApproxCounter()  # the server renders the tool schemas into the prompt itself
            reserved = counter.count(json.dumps(self.registry.schemas()))
        context = ContextManager(traj.system_prompt, traj.task, self.config.context, self.renderer, self.counter,
                                 reserved)
        for turn in traj.turns:
            context.build(turn.user_input)
            context.add(Exchange(turn.index, turn.completion_text, turn.completion_ids, turn.tool_call,
                                 turn.observation if _has_observation(turn) else None, turn.user_input))
        return context

    def _limit_reached(self, turns: list[Turn], started: float) -> str | None:
        if len(turns) >= self.config.max_turns:
            return "max_turns"
        counter = self.counter or ApproxCounter()  # message policies return text only
        if self.config.max_total_tokens is not None and sum(
                len(turn.completion_ids) or counter.count(turn.completion_text) for turn in turns) \
                >= self.config.max_total_tokens:
            return "max_tokens"
        if time.monotonic() - started >= self.config.max_wall_seconds:
            return "timeout"
        return None

    async def _bounded(self, awaitable: Awaitable[Any], limit: float, deadline: float, what: str) -> Any:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(awaitable, max(0.0, min(limit, remaining)))
        except asyncio.TimeoutError:
            if remaining <= limit:
                raise EpisodeTimeout(f"episode wall time ({self.config.max_wall_seconds:g}s) ran out during "
                                     f"{what}") from None
            raise

    async def _complete(self, prompt: Any) -> Completion:
        sampling = self.config.sampling
        if self.token_level:
            return await self.policy.generate(prompt.ids, sampling)
        if self._streams:
            return await self.policy.chat(prompt.messages, self.registry.schemas(), sampling,
                                          on_delta=self.observer.on_text_delta)
        return await self.policy.chat(prompt.messages, self.registry.schemas(), sampling)

    async def _step(self, context: ContextManager, traj: Trajectory, user_input: str | None,
                    deadline: float) -> Turn:
        index = len(traj.turns)
        begin = time.monotonic()
        prompt = context.build(user_input)
        built = time.monotonic()
        self.observer.on_turn_start(index)
        turn = Turn(index=index, user_input=user_input, fork=prompt.fork, prompt_ids=prompt.ids,
                    prompt_messages=None if self.token_level else prompt.messages)
        try:
            completion = await self._bounded(self._complete(prompt), self.config.policy_timeout, deadline,
                                             "a model call")
        except asyncio.TimeoutError:
            raise PolicyError(f"the model did not answer within policy_timeout={self.config.policy_timeout:g}s") \
                from None
        answered = time.monotonic()
        turn.completion_text, turn.completion_ids = completion.text, list(completion.token_ids)
        turn.logprobs, turn.finish_reason = list(completion.logprobs), completion.finish_reason
        turn.policy_version, turn.replayed = completion.policy_version, completion.replayed
        parsed = parse_completion(completion.text, completion.tool_calls)
        error = parsed.error or (self.registry.check(parsed.call) if parsed.call else None)
        if parsed.call is None and error is None and not self.config.text_answer_ends_episode:
            error = f"no tool call found. {FORMAT_HINT}"
        turn.tool_call = parsed.call
        if error:
            turn.parse_error, turn.train_mask = error, 0
            traj.parse_errors += 1
        self.observer.on_completion(turn)
        observation: str | None
        if error:
            observation = f"Error: {error}"
        elif parsed.call is None:  # a plain answer in interactive use
            observation, traj.outcome = None, "answered"
        else:
            try:
                result = await self._run_tool(parsed.call, turn, deadline)
            except EpisodeTimeout as exc:
                result = ToolResult(f"Error: {exc}", is_error=True)
                traj.outcome, traj.error = "timeout", str(exc)
            observation, turn.tool_error = result.output, result.is_error
            if result.is_error:
                turn.train_mask = 0
            if result.ends_episode:
                traj.submission, traj.outcome = result.submission, "submitted"
            self.observer.on_tool_result(turn, result)
        if observation is not None:
            observation = context.cut_observation(observation)
            turn.observation = observation
        context.add(Exchange(index, turn.completion_text, turn.completion_ids, turn.tool_call, observation, user_input))
        done = time.monotonic()
        tools_seconds = turn.timings.get("tools", 0.0)
        turn.timings.update({"context": built - begin, "policy": answered - built, "total": done - begin,
                             "overhead": done - begin - (answered - built) - tools_seconds})
        traj.turns.append(turn)
        return turn

    async def _run_tool(self, call: ToolCall, turn: Turn, deadline: float) -> ToolResult:
        denial = await self._approval(call)
        if denial:
            return ToolResult(denial)
        audit = self.backend.audit
        mark = audit.mark()
        audit.set_tags(turn=turn.index)
        started = time.monotonic()
        limit = 2 * self.config.command_timeout + 30  # a backstop over the per-command timeout
        try:
            result = await self._bounded(self.registry.execute(call, ToolContext(self.backend,
                                         self.config.command_timeout)), limit, deadline, f"the {call.name} tool")
        except asyncio.TimeoutError:
            result = ToolResult(f"Error: {call.name} did not finish within {limit:g}s", is_error=True)
        finally:
            turn.timings["tools"] = time.monotonic() - started
            audit.set_tags(turn=None)  # commands after the turn (a verifier, a diff) are not the model's
            turn.commands = [record.model_dump() for record in audit.since(mark)]
        return result

    async def _approval(self, call: ToolCall) -> str | None:
        """None when the call may run; else the observation explaining why it did not."""
        mode = self.config.approval_mode
        if mode == "yolo" or self.registry.is_read_only(call, self.backend) or \
                (mode == "auto-edit" and call.name != "bash" and not self.registry.touches_outside(call, self.backend)):
            return None
        if self.approver is None:
            return f"{call.name} needs the user's approval in {mode} mode, and no one can approve it; not run."
        verdict = await self.approver(call)
        if verdict is True:
            return None
        reason = f": {verdict}" if isinstance(verdict, str) and verdict else ""
        return f"The user declined this {call.name} call{reason}. Do something else or ask the user."


def _has_observation(turn: Turn) -> bool:
    return bool(turn.tool_call is not None or turn.parse_error)
