"""The OpenAI-compatible HTTP policy, against a real `vllm serve` of the tiny model (slow) and, for the error paths
a real server cannot be made to produce on demand, against a fake transport (unit tests, named as such)."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from iflow_helpers import API_KEY, SERVED_NAME, free_port

from iflow.agent import Agent
from iflow.backends import LocalBackend
from iflow.config import AgentConfig
from iflow.policy import OpenAIChatPolicy, PolicyAuthError, PolicyConnectionError, PolicyError, SamplingParams
from iflow.tools import ToolRegistry

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi."}]
TOOLS = ToolRegistry.from_names().schemas()


# ---- against a real server -------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_chat_stream_and_native_tools_against_vllm_serve(vllm_server: str):
    policy = OpenAIChatPolicy(vllm_server, SERVED_NAME, API_KEY)
    try:
        assert await policy.list_models() == [SERVED_NAME]
        sampling = SamplingParams(max_tokens=16, temperature=0.0, seed=1)
        plain = await policy.chat(MESSAGES, None, sampling)
        assert plain.text and plain.finish_reason in ("length", "stop") and plain.prompt_tokens > 0
        pieces: list[str] = []
        streamed = await policy.chat(MESSAGES, None, sampling, on_delta=pieces.append)
        assert "".join(pieces) == streamed.text == plain.text  # greedy: the same text either way
        with_tools = await policy.chat(MESSAGES, TOOLS, sampling)  # the server has a tool parser: accepted
        assert policy.native_tools is None and isinstance(with_tools.text, str)
        # a history holding a native tool call and its tool result is accepted by the server
        history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a.py"}]
        assert isinstance((await policy.chat(history, TOOLS, sampling)).text, str)
    finally:
        await policy.aclose()


@pytest.mark.slow
async def test_clear_errors_from_a_real_server(vllm_server: str):
    wrong_key = OpenAIChatPolicy(vllm_server, SERVED_NAME, "not-the-key", max_retries=0)
    with pytest.raises(PolicyAuthError, match=r"rejected the API key \(HTTP 401\).*--api-key"):
        await wrong_key.chat(MESSAGES, None, SamplingParams(max_tokens=4))
    await wrong_key.aclose()
    wrong_model = OpenAIChatPolicy(vllm_server, "no-such-model", API_KEY, max_retries=0)
    with pytest.raises(PolicyError, match="HTTP 404.*no-such-model"):
        await wrong_model.chat(MESSAGES, None, SamplingParams(max_tokens=4))
    await wrong_model.aclose()


@pytest.mark.slow
async def test_agent_runs_against_a_real_server(vllm_server: str, tmp_path: Path, tokenizer):
    from iflow.tokens import TokenizerCounter

    policy = OpenAIChatPolicy(vllm_server, SERVED_NAME, API_KEY, native_tools=False)
    config = AgentConfig(max_turns=3, sampling=SamplingParams(max_tokens=48, seed=3))
    counter = TokenizerCounter(tokenizer)
    async with LocalBackend(tmp_path) as backend:
        trajectory = await Agent(policy, backend, config, counter=counter).run("List the files.")
    await policy.aclose()
    assert trajectory.outcome in ("max_turns", "submitted"), trajectory.error
    assert all(turn.prompt_messages[0]["role"] == "system" for turn in trajectory.turns)
    assert trajectory.parse_errors == sum(1 for turn in trajectory.turns if turn.parse_error)


async def test_unreachable_endpoint_is_a_clear_error():
    policy = OpenAIChatPolicy(f"http://127.0.0.1:{free_port()}/v1", "m", "k")
    with pytest.raises(PolicyConnectionError, match="cannot reach the model server at http://127.0.0.1"):
        await policy.chat(MESSAGES, None, SamplingParams())
    await policy.aclose()


def test_bad_configuration_is_rejected_up_front():
    with pytest.raises(ValueError, match="must start with http"):
        OpenAIChatPolicy("127.0.0.1:8000", "m")
    with pytest.raises(ValueError, match="model name is empty"):
        OpenAIChatPolicy("http://127.0.0.1:8000/v1", "")


# ---- unit tests over a fake transport --------------------------------------------------------------------------
def fake_server_policy(handler, **kwargs) -> OpenAIChatPolicy:
    policy = OpenAIChatPolicy("http://fake.invalid/v1", "m", "k", **kwargs)
    policy._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return policy


async def test_fake_server_refusing_tools_makes_the_policy_fall_back_to_text():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "tools" in body:
            return httpx.Response(400, json={"error": {"message": '"auto" tool choice requires '
                                                                  '--enable-auto-tool-choice'}})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})

    policy = fake_server_policy(handler)
    assert (await policy.chat(MESSAGES, TOOLS, SamplingParams())).text == "ok"
    assert policy.native_tools is False and "tools" not in bodies[-1]
    await policy.chat(MESSAGES, TOOLS, SamplingParams())
    assert len(bodies) == 3  # the refusal is remembered: no second attempt with tools


async def test_fake_server_streamed_tool_call_fragments_are_joined():
    chunks = [{"choices": [{"delta": {"content": "Let me look. "}}]},
              {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_7", "function": {"name": "vi"}}]}}]},
              {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "ew", "arguments": '{"pa'}}]}}]},
              {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'th": "a"}'}}]},
                            "finish_reason": "tool_calls"}]}]
    stream = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    policy = fake_server_policy(lambda request: httpx.Response(200, text=stream))
    pieces: list[str] = []
    completion = await policy.chat(MESSAGES, TOOLS, SamplingParams(), on_delta=pieces.append)
    assert pieces == ["Let me look. "] and completion.finish_reason == "tool_calls"
    assert completion.tool_calls == [{"id": "call_7", "type": "function",
                                      "function": {"name": "view", "arguments": '{"path": "a"}'}}]


async def test_fake_server_errors_are_retried_then_reported():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(503, text="overloaded") if len(calls) < 3 else httpx.Response(
            200, json={"choices": [{"message": {"content": "finally"}, "finish_reason": "stop"}]})

    assert (await fake_server_policy(handler, max_retries=2).chat(MESSAGES, None, SamplingParams())).text == "finally"
    garbage = fake_server_policy(lambda request: httpx.Response(200, json={"unexpected": True}))
    with pytest.raises(PolicyError, match="unexpected response"):
        await garbage.chat(MESSAGES, None, SamplingParams())
    broken_stream = fake_server_policy(lambda request: httpx.Response(200, text="data: {not json\n\n"))
    with pytest.raises(PolicyError, match="malformed"):
        await broken_stream.chat(MESSAGES, None, SamplingParams(), on_delta=lambda text: None)
