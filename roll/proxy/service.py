"""The proxy's work, independent of HTTP: a request body in, a recorded `ProxyCall` out.

Every call is bounded by the request timeout; when it runs out, or the client goes away (the handler is cancelled),
the engine request is aborted and the call is recorded as such. Only completed calls can be extended by a next
request, so an aborted call never leaves the session's token history half-written."""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from iflow.parsing import parse_text
from iflow.policy.base import SamplingParams
from iflow.policy.errors import PolicyError
from roll.proxy.config import ProxyConfig
from roll.proxy.records import ProxyCall
from roll.proxy.render import Continuation, PromptRenderer, RenderError, normalize_message
from roll.proxy.sessions import Session

_ids = itertools.count()
CONTEXT_FULL = "context_length_exceeded"


class BadRequest(ValueError):
    """The request is malformed or cannot fit (HTTP 400). `code` as OpenAI names it, when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class EngineFailure(RuntimeError):
    """The engine failed or timed out (HTTP 503 / 504)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def tool_call_payload(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


class ProxyService:
    def __init__(self, policy: Any, config: ProxyConfig | None = None, tokenizer: Any = None) -> None:
        """`policy` is an iflow TokenPolicy: `await policy.generate(prompt_ids, sampling)` -> Completion. It may be
        None when every session brings its own (then `tokenizer` is required)."""
        self.policy = policy
        self.config = config or ProxyConfig()
        self.tokenizer = tokenizer if tokenizer is not None else policy.tokenizer
        self.renderer = PromptRenderer(self.tokenizer)

    # ---- request parsing ----------------------------------------------------------------------------------------
    def _sampling(self, body: dict[str, Any], prompt_len: int, tokens_left: int | None = None) -> SamplingParams:
        room = self.config.max_model_len - prompt_len
        if room < 1:
            raise BadRequest(f"the prompt has {prompt_len} tokens; this model holds {self.config.max_model_len}",
                             code=CONTEXT_FULL)
        asked = body.get("max_completion_tokens") or body.get("max_tokens") or self.config.max_tokens
        if not isinstance(asked, int) or asked < 1:
            raise BadRequest("max_tokens must be a positive integer")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
            raise BadRequest("stop must be a string or a list of at most 8 strings")
        cap = min(asked, self.config.max_tokens, room, tokens_left if tokens_left is not None else room)
        update: dict[str, Any] = {"max_tokens": max(1, cap), "stop": stop}
        if self.config.honor_client_sampling:
            for key in ("temperature", "top_p", "seed"):
                if body.get(key) is not None:
                    update[key] = body[key]
        return self.config.sampling.model_copy(update=update)

    def _chat_prompt(self, session: Session, call: ProxyCall, body: dict[str, Any]) -> list[int]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages must be a non-empty list")
        tools = body.get("tools") or None
        if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
            raise BadRequest("tools must be a list of objects")
        try:
            call.messages = [normalize_message(m) for m in messages]
            call.tools = tools
            if session.continuation is not None:
                spliced = self.renderer.splice(call.messages, tools, session.continuation)
                if spliced is not None:
                    call.prompt_source = "spliced"
                    return spliced
            call.prompt_source = "rendered"
            return self.renderer.render(call.messages, tools)
        except RenderError as exc:
            raise BadRequest(str(exc)) from None

    def _raw_prompt(self, body: dict[str, Any]) -> list[int]:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str) and prompt:
            return self.renderer.encode_raw(prompt)
        vocab = len(self.tokenizer)
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and 0 <= t < vocab for t in prompt):
            return list(prompt)
        raise BadRequest("prompt must be a non-empty string or a list of token ids (one prompt per request)")

    # ---- the call ---------------------------------------------------------------------------------------------
    def prepare(self, session: Session, endpoint: str, body: dict[str, Any]) -> tuple[ProxyCall, SamplingParams]:
        """Render the prompt and bound the sampling. Raises BadRequest (the refusal is recorded on the session)."""
        started = time.monotonic()
        seq = next(_ids)
        call = ProxyCall(id=f"{endpoint[:4]}-{seq}", seq=seq, session=session.name, endpoint=endpoint,
                         stream=bool(body.get("stream")))
        try:
            if endpoint == "chat":
                call.prompt_ids = self._chat_prompt(session, call, body)
            else:
                call.prompt_source, call.prompt_ids = "raw", self._raw_prompt(body)
            sampling = self._sampling(body, len(call.prompt_ids), session.tokens_left())
        except BadRequest as exc:
            call.status, call.error, call.error_code = "rejected", str(exc), exc.code
            session.record(call)
            raise
        call.timings["render"] = time.monotonic() - started
        return call, sampling

    async def execute(self, session: Session, call: ProxyCall, sampling: SamplingParams) -> ProxyCall:
        """Generate, parse and record. Raises EngineFailure; a cancellation (client gone) aborts the engine request
        and is recorded as "aborted"."""
        mark = time.monotonic()
        try:
            try:
                policy = session.policy or self.policy
                if policy is None:
                    call.status = "error"
                    raise EngineFailure("this session has no engine")
                completion = await asyncio.wait_for(policy.generate(call.prompt_ids, sampling),
                                                    self.config.request_timeout)
            except asyncio.TimeoutError:
                call.status = "timeout"
                raise EngineFailure(f"the model did not answer within {self.config.request_timeout:g}s",
                                    timed_out=True) from None
            except PolicyError as exc:
                call.status = "error"
                raise EngineFailure(str(exc)) from None
            call.timings["engine"] = time.monotonic() - mark
            self._fill(call, completion, tools=bool(call.tools))
            if call.endpoint == "chat":
                session.continuation = Continuation(call.messages or [], call.tools, call.prompt_ids,
                                                    call.completion_ids, call.response_message or {})
            return call
        except EngineFailure as exc:
            call.error = str(exc)
            raise
        except asyncio.CancelledError:
            call.status, call.error = "aborted", "the client went away; the engine request was aborted"
            raise
        finally:
            call.timings["total"] = call.timings.get("render", 0.0) + time.monotonic() - mark
            session.record(call)

    async def run(self, session: Session, endpoint: str, body: dict[str, Any]) -> ProxyCall:
        call, sampling = self.prepare(session, endpoint, body)
        return await self.execute(session, call, sampling)

    def _fill(self, call: ProxyCall, completion: Any, tools: bool) -> None:
        call.completion_ids = list(completion.token_ids)
        call.logprobs = list(completion.logprobs)
        call.completion_text = completion.text
        call.policy_version = completion.policy_version
        call.finish_reason = completion.finish_reason
        message: dict[str, Any] = {"role": "assistant", "content": completion.text}
        if tools:
            parsed = parse_text(completion.text)
            call.parse_error = parsed.error
            if parsed.call is not None:
                call.tool_call = parsed.call.model_copy(update={"id": f"call_{call.id}"})
                message = {"role": "assistant", "content": parsed.content or None,
                           "tool_calls": [tool_call_payload(call.tool_call.id, parsed.call.name,
                                                            parsed.call.arguments)]}
        call.response_message = normalize_message(message)

    def finish_reason(self, call: ProxyCall) -> str:
        if call.tool_call is not None:
            return "tool_calls"
        return "length" if call.finish_reason == "length" else "stop"
