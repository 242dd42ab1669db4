"""The proxy's protocol paths that need a model to answer in a particular way (a tool call) or slowly (limits,
disconnects): a scripted fake policy, in a unit test only. The same paths with a real engine are in
tests/roll/test_proxy.py and tests/roll/test_proxy_vllm.py."""
from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from iflow.policy.base import Completion
from iflow.trajectory import training_sequences
from roll.proxy.config import ProxyConfig
from roll.proxy.server import ProxyServer
from roll.proxy.trajectory import build_trajectory

TOOLS = [{"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {
    "command": {"type": "string"}}}}}]
CALL_TEXT = 'let me look\n<tool_call>\n{"name": "bash", "arguments": {"command": "ls -la"}}\n</tool_call>'


class FakeScriptedPolicy:
    """Answers the n-th prompt with texts[n] (the last one from then on; + the end-of-turn token) after `delay`
    seconds; counts cancellations."""

    def __init__(self, tokenizer, text: str | list[str] = CALL_TEXT, delay: float = 0.0) -> None:
        self.tokenizer, self.delay = tokenizer, delay
        self.texts = [text] if isinstance(text, str) else list(text)
        self.started = self.cancelled = self.finished = 0
        self.in_flight = self.peak = 0
        self._lock = threading.Lock()

    async def generate(self, prompt_ids, sampling) -> Completion:
        with self._lock:
            self.started += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1
        text = self.texts[min(self.finished, len(self.texts) - 1)]
        self.finished += 1
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: sampling.max_tokens - 1]
        ids.append(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        return Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True), token_ids=ids,
                          logprobs=[-0.25] * len(ids), finish_reason="stop", policy_version=7)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def serve(policy, **config) -> ProxyServer:
    folder = tempfile.mkdtemp(prefix="roll-proxy-")
    return ProxyServer(policy, ProxyConfig(**{"max_tokens": 64, **config}), uds=f"{folder}/proxy.sock").start()


def client_for(server: ProxyServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.session_url(token), api_key="unused", max_retries=0,
                         http_client=server.http_client())


def test_tool_calls_native_and_streamed_then_spliced_back(tokenizer) -> None:
    server = serve(FakeScriptedPolicy(tokenizer))
    try:
        session = server.sessions.open("episode-tools")
        client = client_for(server, session.token)
        messages = [{"role": "user", "content": "what is here?"}]
        reply = client.chat.completions.create(model="policy", messages=messages, tools=TOOLS)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content == "let me look"
        (tool,) = choice.message.tool_calls
        assert tool.function.name == "bash" and json.loads(tool.function.arguments) == {"command": "ls -la"}
        assert session.calls[-1].tool_call.name == "bash" and session.calls[-1].policy_version == 7

        messages += [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": tool.id, "content": "README.md\nsetup.py"}]
        chunks = list(client.chat.completions.create(model="policy", messages=messages, tools=TOOLS, stream=True))
        deltas = [c.choices[0].delta for c in chunks]
        streamed = [d.tool_calls[0] for d in deltas if d.tool_calls]
        assert [t.function.name for t in streamed] == ["bash"]
        assert json.loads(streamed[0].function.arguments) == {"command": "ls -la"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        first, second = session.calls
        assert second.prompt_source == "spliced"
        assert second.prompt_ids[: len(first.prompt_ids) + len(first.completion_ids)] == \
            first.prompt_ids + first.completion_ids
        assert "<tool_response>\nREADME.md\nsetup.py\n</tool_response>" in tokenizer.decode(second.prompt_ids)

        trajectory = build_trajectory(session.calls, trajectory_id="t-tools", task="what is here?")
        assert [t.tool_call.name for t in trajectory.turns] == ["bash", "bash"]
        assert trajectory.turns[0].observation == "README.md\nsetup.py"
        (sequence,) = training_sequences(trajectory)
        assert sequence.input_ids == second.prompt_ids + second.completion_ids
        assert sum(sequence.train_mask) == len(first.completion_ids) + len(second.completion_ids)
    finally:
        server.stop()


def test_a_flooding_session_gets_429_and_others_are_served(tokenizer) -> None:
    policy = FakeScriptedPolicy(tokenizer, delay=1.0)
    server = serve(policy, max_concurrent_per_session=2)
    try:
        flood, calm = server.sessions.open("flood"), server.sessions.open("calm")

        async def main():
            async with server.async_http_client() as http:
                body = {"model": "policy", "messages": [{"role": "user", "content": "hi"}]}
                floods = [http.post(server.session_url(flood.token) + "/chat/completions", json=body)
                          for _ in range(8)]
                other = http.post(server.session_url(calm.token) + "/chat/completions", json=body)
                return await asyncio.gather(*floods, other)

        *flooded, other = asyncio.run(main())
        codes = sorted(r.status_code for r in flooded)
        assert codes == [200, 200] + [429] * 6
        assert other.status_code == 200
        assert policy.peak <= 3 and server.sessions.in_flight == 0
    finally:
        server.stop()


def test_a_hanging_engine_times_out_and_the_session_goes_on(tokenizer) -> None:
    policy = FakeScriptedPolicy(tokenizer, delay=30.0)
    server = serve(policy, request_timeout=0.5)
    try:
        session = server.sessions.open("episode-timeout")
        with pytest.raises(openai.APIStatusError) as caught:
            client_for(server, session.token).chat.completions.create(
                model="policy", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 504
        assert policy.cancelled == 1 and session.calls[-1].status == "timeout" and session.in_flight == 0
        policy.delay = 0.0
        reply = client_for(server, session.token).chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    finally:
        server.stop()


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_aborts_its_engine_request(tokenizer, stream: bool) -> None:
    policy = FakeScriptedPolicy(tokenizer, delay=3.0)
    server = serve(policy)
    try:
        session = server.sessions.open("episode-gone")
        body = {"model": "policy", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        url = server.session_url(session.token) + "/chat/completions"
        with server.http_client(timeout=0.5 if not stream else 30) as http:
            if stream:
                with http.stream("POST", url, json=body) as response:
                    first = next(response.iter_lines())
                    assert first.startswith("data: ") and '"role": "assistant"' in first
            else:
                with pytest.raises(httpx.ReadTimeout):
                    http.post(url, json=body)
        deadline = time.monotonic() + 2.5  # well before the fake would have answered
        while policy.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert policy.cancelled == 1 and policy.finished == 0
        assert [c.status for c in session.calls] == ["aborted"] and session.in_flight == 0
        assert session.continuation is None  # nothing half-served can be extended
    finally:
        server.stop()
