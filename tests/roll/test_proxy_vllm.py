"""The proxy in front of the rollout's vLLM engine actor (the shared `vllm_engines` fixture): 16 concurrent
sessions through the official client, token-exact records, and a client that disconnects mid-stream (the engine
aborts the request)."""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import openai
import pytest

from roll.proxy.backend import ActorPolicy
from roll.proxy.config import ProxyConfig
from roll.proxy.server import ProxyServer
from roll.proxy.trajectory import build_trajectory
from tests.roll.test_proxy import assert_trained_equals_served


@pytest.fixture(scope="module")
def server(vllm_engines, tiny_model_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    folder = tempfile.mkdtemp(prefix="roll-proxy-")
    cfg = ProxyConfig(max_tokens=700, max_model_len=768, max_concurrent_total=64)
    running = ProxyServer(ActorPolicy(vllm_engines.actors[0], tokenizer), cfg, uds=f"{folder}/proxy.sock").start()
    yield running
    running.stop()


def test_sixteen_concurrent_sessions_are_served_token_exact(server, vllm_engines) -> None:
    version = vllm_engines.policy_version()
    sessions = [server.sessions.open(f"episode-{i}") for i in range(16)]

    async def episode(session):
        client = openai.AsyncOpenAI(base_url=server.session_url(session.token), api_key="unused", max_retries=0,
                                    http_client=server.async_http_client())
        messages = [{"role": "user", "content": f"task {session.name}"}]
        for step in range(2):
            reply = await client.chat.completions.create(model="policy", messages=messages, max_tokens=16)
            messages += [reply.choices[0].message.model_dump(exclude_none=True),
                         {"role": "user", "content": f"step {step} done"}]
        await client.close()

    async def main():
        await asyncio.gather(*(episode(s) for s in sessions))

    asyncio.run(main())
    assert server.sessions.in_flight == 0
    for session in sessions:
        assert [c.status for c in session.calls] == ["ok", "ok"]
        assert {c.session for c in session.calls} == {session.name}
        assert [c.prompt_source for c in session.calls] == ["rendered", "spliced"]
        assert {c.policy_version for c in session.calls} == {version}
        trajectory = build_trajectory(session.calls, trajectory_id=session.name)
        assert [t.fork for t in trajectory.turns] == [False, False]
        assert_trained_equals_served(trajectory, session.calls)
    prompts = {tuple(s.calls[0].prompt_ids) for s in sessions}
    assert len(prompts) == 16  # no session was answered with another's prompt


def test_a_client_that_disconnects_mid_stream_aborts_the_engine_request(server, vllm_engines) -> None:
    import ray

    actor = vllm_engines.actors[0]
    aborted_before = ray.get(actor.get_stats.remote())["aborted"]
    session = server.sessions.open("episode-disconnect")
    body = {"model": "policy", "messages": [{"role": "user", "content": "write a long story"}], "stream": True,
            "max_tokens": 700}
    with server.http_client() as http:
        with http.stream("POST", server.session_url(session.token) + "/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert '"role": "assistant"' in next(response.iter_lines())
    deadline = time.monotonic() + 20
    while not session.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c.status for c in session.calls] == ["aborted"] and session.in_flight == 0
    while ray.get(actor.get_stats.remote())["aborted"] == aborted_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.get(actor.get_stats.remote())["aborted"] == aborted_before + 1
    # the session stays consistent: the next request is served and nothing extends the aborted call
    client = openai.OpenAI(base_url=server.session_url(session.token), api_key="unused", max_retries=0,
                           http_client=server.http_client())
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    assert [c.status for c in session.calls] == ["aborted", "ok"]
    assert session.calls[-1].prompt_source == "rendered"
