"""The HTTP face of the proxy (FastAPI): `/v1/models`, `/v1/chat/completions` (tools, SSE streaming) and
`/v1/completions`, each also under `/s/<session token>/v1/...`. Without the path segment the API key
(`Authorization: Bearer <token>`) names the session. Unknown sessions get 401: nothing is served outside an episode."""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from roll.proxy.records import ProxyCall
from roll.proxy.service import BadRequest, EngineFailure, ProxyService
from roll.proxy.sessions import Session, SessionLimit, SessionRegistry


def error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}}, status)


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` (declared or streamed) with 413, before any handler
    reads it into memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await error(413, f"request body over {self.max_bytes} bytes", "invalid_request_error")(
                scope, receive, send)
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BadRequest(f"request body over {self.max_bytes} bytes")
            return message

        try:
            await self.app(scope, limited, send)
        except BadRequest as exc:
            await error(413, str(exc), "invalid_request_error")(scope, receive, send)


class ClientGone(Exception):
    """The client disconnected before the answer was ready; the engine request was cancelled."""


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`, cancelling it (so the engine aborts the request) if the client disconnects first. The ASGI
    server does not cancel a handler on disconnect by itself, so the connection is watched alongside."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            watch.cancel()
            raise ClientGone()
        watch.cancel()
    return task.result()


class SessionStream(StreamingResponse):
    """An SSE response that gives the session's admission back once it is over, however it ends (also when the
    client is gone before the first byte, and the body is never iterated)."""

    def __init__(self, content: AsyncIterator[bytes], release: Any) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _usage(call: ProxyCall) -> dict[str, int]:
    return {"prompt_tokens": len(call.prompt_ids), "completion_tokens": len(call.completion_ids),
            "total_tokens": len(call.prompt_ids) + len(call.completion_ids)}


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def create_app(service: ProxyService, sessions: SessionRegistry) -> FastAPI:
    app = FastAPI(title="roll model proxy", docs_url=None, redoc_url=None, openapi_url=None)
    model = service.config.model_name

    def session_of(request: Request, token: str | None, admit: bool = True) -> Session | JSONResponse:
        if token is None:
            auth = request.headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        try:
            if not admit:
                known = sessions.get(token or "")
                if known is None or known.closed:
                    raise KeyError(token)
                return known
            return sessions.admit(token or "")
        except KeyError:
            return error(401, "unknown or closed session", "authentication_error", "invalid_api_key")
        except SessionLimit as exc:
            return error(429, str(exc), "rate_limit_error", "rate_limit_exceeded")

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def chat_body(call: ProxyCall) -> dict[str, Any]:
        message = dict(call.response_message or {"role": "assistant", "content": ""})
        if message.get("tool_calls"):
            message["tool_calls"] = [{**c, "function": {**c["function"],
                                                        "arguments": json.dumps(c["function"]["arguments"])}}
                                     for c in message["tool_calls"]]
        return {"id": f"chatcmpl-{call.id}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                             "finish_reason": service.finish_reason(call)}],
                "usage": _usage(call), "system_fingerprint": f"policy-v{call.policy_version}"}

    def text_body(call: ProxyCall) -> dict[str, Any]:
        return {"id": f"cmpl-{call.id}", "object": "text_completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "text": call.completion_text, "logprobs": None,
                             "finish_reason": "length" if call.finish_reason == "length" else "stop"}],
                "usage": _usage(call)}

    async def stream(request: Request, session: Session, call: ProxyCall, sampling: Any, chat: bool,
                     usage: bool) -> AsyncIterator[bytes]:
        """Headers and a first chunk go out at once; the rest when the engine answers. A client that disconnects
        meanwhile is noticed by `until_disconnect`, which cancels the engine request."""
        ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{call.id}", int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choice: dict[str, Any], **extra: Any) -> bytes:
            return _sse({"id": ident, "object": kind, "created": created, "model": model,
                         "choices": [{"index": 0, "logprobs": None, "finish_reason": None, **choice}], **extra})

        if chat:
            yield chunk({"delta": {"role": "assistant", "content": ""}})
        try:
            await until_disconnect(request, service.execute(session, call, sampling))
        except EngineFailure as exc:
            yield _sse({"error": {"message": str(exc), "type": "server_error", "code": None}})
            return
        except ClientGone:
            return
        if chat:
            message = call.response_message or {}
            if message.get("content"):
                yield chunk({"delta": {"content": message["content"]}})
            for index, tool in enumerate(message.get("tool_calls") or []):
                yield chunk({"delta": {"tool_calls": [{"index": index, "id": tool["id"], "type": "function",
                                                       "function": {"name": tool["function"]["name"],
                                                                    "arguments": json.dumps(
                                                                        tool["function"]["arguments"])}}]}})
            yield chunk({"delta": {}, "finish_reason": service.finish_reason(call)})
        else:
            yield chunk({"text": call.completion_text,
                         "finish_reason": "length" if call.finish_reason == "length" else "stop"})
        if usage:
            yield _sse({"id": ident, "object": kind, "created": created, "model": model, "choices": [],
                        "usage": _usage(call)})
        yield b"data: [DONE]\n\n"

    async def handle(request: Request, token: str | None, endpoint: str) -> Any:
        session = session_of(request, token)
        if isinstance(session, JSONResponse):
            return session
        streaming = False
        try:
            body = await body_of(request)
            call, sampling = service.prepare(session, endpoint, body)
            if body.get("stream"):
                usage = bool((body.get("stream_options") or {}).get("include_usage"))
                streaming = True
                return SessionStream(stream(request, session, call, sampling, endpoint == "chat", usage),
                                     lambda: sessions.release(session))
            await until_disconnect(request, service.execute(session, call, sampling))
            return JSONResponse(chat_body(call) if endpoint == "chat" else text_body(call))
        except BadRequest as exc:
            return error(400, str(exc), "invalid_request_error", exc.code)
        except EngineFailure as exc:
            return error(504 if exc.timed_out else 503, str(exc), "server_error")
        except ClientGone:
            return error(499, "client closed the connection", "invalid_request_error")
        finally:
            if not streaming:
                sessions.release(session)

    def models_body() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "created": 0, "owned_by": "roll"}]}

    async def models(request: Request, token: str | None = None) -> Any:
        session = session_of(request, token, admit=False)  # listing models is not a model call
        return session if isinstance(session, JSONResponse) else JSONResponse(models_body())

    async def chat(request: Request, token: str | None = None) -> Any:
        return await handle(request, token, "chat")

    async def completions(request: Request, token: str | None = None) -> Any:
        return await handle(request, token, "completions")

    for prefix in ("", "/s/{token}"):
        app.add_api_route(f"{prefix}/v1/models", models, methods=["GET"])
        app.add_api_route(f"{prefix}/v1/chat/completions", chat, methods=["POST"])
        app.add_api_route(f"{prefix}/v1/completions", completions, methods=["POST"])
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes)
    return app
