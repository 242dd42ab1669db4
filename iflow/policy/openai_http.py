"""A message policy over any OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI, ...).

Native `tool_calls` are used when the server accepts `tools`; a server that refuses them (HTTP 400 naming tools, as
`vllm serve` without a tool parser does) is remembered and spoken to in the text convention from then on."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from iflow.policy.base import Completion, SamplingParams
from iflow.policy.errors import PolicyAuthError, PolicyConnectionError, PolicyError


class _Retryable(PolicyError):
    pass


class OpenAIChatPolicy:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600.0,
                 connect_timeout: float = 10.0, max_retries: int = 2, native_tools: bool | None = None,
                 extra_body: dict[str, Any] | None = None) -> None:
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model name is empty: pass --model or set IFLOW_MODEL")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.native_tools = native_tools  # None: try, and fall back on refusal
        self.extra_body = extra_body or {}
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout, connect=connect_timeout))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def list_models(self) -> list[str]:
        response = await self._request("GET", "/models")
        return [entry.get("id", "") for entry in response.json().get("data", [])]

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                   sampling: SamplingParams, on_delta: Callable[[str], None] | None = None) -> Completion:
        """One completion. `on_delta` receives the text as it streams (the reply is streamed when it is given)."""
        use_tools = bool(tools) and self.native_tools is not False
        body = self._body(messages, tools if use_tools else None, sampling, stream=on_delta is not None)
        try:
            return await self._complete(body, on_delta)
        except PolicyError as exc:
            if use_tools and self.native_tools is None and "tool" in str(exc).lower() and "HTTP 400" in str(exc):
                self.native_tools = False
                return await self._complete(self._body(messages, None, sampling, on_delta is not None), on_delta)
            raise

    def _body(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, sampling: SamplingParams,
              stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                                "top_p": sampling.top_p, "max_tokens": sampling.max_tokens, "stream": stream}
        if sampling.top_k != -1:
            body["top_k"] = sampling.top_k
        if sampling.stop:
            body["stop"] = sampling.stop
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if tools:
            body["tools"], body["tool_choice"] = tools, "auto"
        return {**body, **self.extra_body}

    async def _complete(self, body: dict[str, Any], on_delta: Callable[[str], None] | None) -> Completion:
        if on_delta is None:
            data = (await self._request("POST", "/chat/completions", body)).json()
            try:
                choice = data["choices"][0]
                message = choice.get("message") or {}
            except (KeyError, IndexError, TypeError):
                raise PolicyError(f"unexpected response from {self.base_url}: {str(data)[:300]}") from None
            return Completion(text=message.get("content") or "", finish_reason=choice.get("finish_reason"),
                              tool_calls=message.get("tool_calls") or None,
                              prompt_tokens=(data.get("usage") or {}).get("prompt_tokens", 0))
        return await self._stream(body, on_delta)

    async def _stream(self, body: dict[str, Any], on_delta: Callable[[str], None]) -> Completion:
        text, calls, finish, prompt_tokens = [], {}, None, 0
        async for attempt in self._retrying():
            with attempt:
                text, calls, finish = [], {}, None
                try:
                    async with self._client.stream("POST", self.base_url + "/chat/completions", json=body) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            self._raise_for_status(response)
                        async for line in response.aiter_lines():
                            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                                continue
                            try:
                                chunk = json.loads(line[5:])
                            except ValueError:
                                raise PolicyError(f"malformed stream chunk from {self.base_url}: "
                                                  f"{line[:200]!r}") from None
                            prompt_tokens = (chunk.get("usage") or {}).get("prompt_tokens", prompt_tokens)
                            for choice in chunk.get("choices") or []:
                                delta = choice.get("delta") or {}
                                if delta.get("content"):
                                    text.append(delta["content"])
                                    on_delta(delta["content"])
                                for call in delta.get("tool_calls") or []:
                                    slot = calls.setdefault(call.get("index", 0), {"id": None, "type": "function",
                                                            "function": {"name": "", "arguments": ""}})
                                    slot["id"] = call.get("id") or slot["id"]
                                    function = call.get("function") or {}
                                    slot["function"]["name"] += function.get("name") or ""
                                    slot["function"]["arguments"] += function.get("arguments") or ""
                                finish = choice.get("finish_reason") or finish
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from None
        return Completion(text="".join(text), finish_reason=finish, prompt_tokens=prompt_tokens,
                          tool_calls=[calls[index] for index in sorted(calls)] or None)

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(retry=retry_if_exception_type(_Retryable), stop=stop_after_attempt(self.max_retries + 1),
                             wait=wait_exponential(multiplier=0.5, max=8), reraise=True)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        async for attempt in self._retrying():
            with attempt:
                try:
                    response = await self._client.request(method, self.base_url + path, json=body)
                except httpx.HTTPError as exc:
                    raise self._transport_error(exc) from None
                self._raise_for_status(response)
                return response
        raise AssertionError("unreachable")

    def _transport_error(self, exc: httpx.HTTPError) -> PolicyError:
        if isinstance(exc, httpx.ConnectError):
            return PolicyConnectionError(f"cannot reach the model server at {self.base_url} ({exc}); is it running? "
                                         "check --base-url / IFLOW_BASE_URL")
        if isinstance(exc, httpx.TimeoutException):
            return _Retryable(f"the model server at {self.base_url} timed out ({type(exc).__name__})")
        return _Retryable(f"transport error talking to {self.base_url}: {type(exc).__name__}: {exc}")

    def _raise_for_status(self, response: httpx.Response) -> None:
        code = response.status_code
        if code < 400:
            return
        detail = response.text[:500].strip()
        if code in (401, 403):
            raise PolicyAuthError(f"the model server at {self.base_url} rejected the API key (HTTP {code}): {detail}; "
                                  "check --api-key / IFLOW_API_KEY")
        if code == 404:
            raise PolicyError(f"HTTP 404 from {response.request.url}: {detail}; check --base-url (it usually ends "
                              f"in /v1) and --model ({self.model!r})")
        if code == 429 or code >= 500:
            raise _Retryable(f"HTTP {code} from {self.base_url}: {detail}")
        raise PolicyError(f"HTTP {code} from {self.base_url}: {detail}")
