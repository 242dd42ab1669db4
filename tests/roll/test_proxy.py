"""The model proxy against a real engine (the tiny checkpoint on the transformers engine, in process): the official
`openai` client, streaming, records that hold exactly the served tokens, splicing and fork detection."""
from __future__ import annotations

import tempfile
from pathlib import Path

import openai
import pytest

from iflow.trajectory import training_sequences
from roll.proxy.config import ProxyConfig
from roll.proxy.render import PromptRenderer
from roll.proxy.server import ProxyServer
from roll.proxy.trajectory import build_trajectory

TOOLS = [{"type": "function", "function": {"name": "bash", "description": "run a shell command",
                                           "parameters": {"type": "object",
                                                          "properties": {"command": {"type": "string"}}}}}]
# Re-rendering changes earlier tokens: the system line counts the messages, so every new message rewrites it.
COUNTING_TEMPLATE = ("<|im_start|>system\nconversation of {{ messages | length }} messages<|im_end|>\n"
                     "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path):
    from roll.engines.actor import build_engine
    from roll.engines.config import EngineConfig

    built = build_engine(tiny_model_path, EngineConfig(backend="hf", max_model_len=768, hf_max_batch=16))
    yield built
    built.close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


def serve(engine, tokenizer, **config):
    from roll.engines.policy import LocalTokenPolicy

    folder = tempfile.mkdtemp(prefix="roll-proxy-")
    cfg = ProxyConfig(**{"max_tokens": 24, "max_model_len": 768, "sampling": {"temperature": 1.0}, **config})
    return ProxyServer(LocalTokenPolicy(engine, tokenizer), cfg, uds=f"{folder}/proxy.sock").start()


def client_for(server: ProxyServer, token: str, in_path: bool = True) -> openai.OpenAI:
    base = server.session_url(token) if in_path else server.base_url
    return openai.OpenAI(base_url=base, api_key=token if not in_path else "unused", max_retries=0,
                         http_client=server.http_client())


@pytest.fixture(scope="module")
def server(engine, tokenizer):
    running = serve(engine, tokenizer)
    yield running
    running.stop()


def assert_trained_equals_served(trajectory, calls) -> None:
    """Every trained token is a served completion token, in exactly the prompt it was served in."""
    served = {c.seq: c for c in calls if c.status == "ok"}
    by_index = {t.index: t for t in trajectory.turns}
    trained = 0
    for sequence in training_sequences(trajectory):
        positions = [i for i, turn in enumerate(sequence.turn_ids) if turn >= 0]
        for index in sorted({sequence.turn_ids[i] for i in positions}):
            turn = by_index[index]
            start, end = len(turn.prompt_ids), len(turn.prompt_ids) + len(turn.completion_ids)
            assert [i for i in positions if sequence.turn_ids[i] == index] == list(range(start, end))
            assert sequence.input_ids[:start] == turn.prompt_ids
            assert sequence.input_ids[start:end] == turn.completion_ids
            assert sequence.engine_logprobs[start:end] == turn.logprobs
            trained += end - start
    assert {tuple(c.completion_ids) for c in served.values()} == {tuple(t.completion_ids) for t in trajectory.turns}
    assert trained == sum(len(c.completion_ids) for c in served.values())


def test_openai_client_models_chat_completions_and_records(server, tokenizer) -> None:
    session = server.sessions.open("episode-a")
    client = client_for(server, session.token)
    assert [m.id for m in client.models.list().data] == ["policy"]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "list the files"}]
    reply = client.chat.completions.create(model="policy", messages=messages, tools=TOOLS, max_tokens=12)
    call = session.calls[-1]
    assert call.status == "ok" and call.endpoint == "chat" and call.prompt_source == "rendered"
    assert call.prompt_ids == PromptRenderer(tokenizer).render(messages, TOOLS)
    assert '"name": "bash"' in tokenizer.decode(call.prompt_ids)  # the template rendered the tools
    assert 1 <= len(call.completion_ids) == len(call.logprobs) <= 12
    assert all(lp <= 0 for lp in call.logprobs) and call.policy_version == 0
    assert reply.usage.prompt_tokens == len(call.prompt_ids)
    assert reply.usage.completion_tokens == len(call.completion_ids)
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert set(call.timings) >= {"render", "engine", "total"}

    text = client.completions.create(model="policy", prompt="def add(a, b):", max_tokens=6)
    raw = session.calls[-1]
    assert raw.endpoint == "completions" and raw.prompt_source == "raw"
    assert raw.prompt_ids == tokenizer("def add(a, b):", add_special_tokens=False)["input_ids"]
    assert text.choices[0].text == raw.completion_text and len(raw.completion_ids) <= 6


def test_streaming_delivers_the_recorded_completion(server) -> None:
    session = server.sessions.open("episode-stream")
    client = client_for(server, session.token, in_path=False)  # the API key names the session
    chunks = list(client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    call = session.calls[-1]
    assert call.stream and call.status == "ok"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == call.completion_text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens == len(call.completion_ids)


def test_requests_outside_a_session_and_over_limits_are_refused(server) -> None:
    with pytest.raises(openai.AuthenticationError):
        client_for(server, "not-a-session").chat.completions.create(
            model="policy", messages=[{"role": "user", "content": "hi"}])
    session = server.sessions.open("episode-limits")
    client = client_for(server, session.token)
    with pytest.raises(openai.BadRequestError, match="holds 768") as full:
        client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "word " * 900}])
    assert full.value.code == "context_length_exceeded" and session.calls[-1].error_code == full.value.code
    with server.http_client() as http:
        big = http.post(server.session_url(session.token) + "/chat/completions", content=b"x" * 2_100_000,
                        headers={"content-type": "application/json"})
        assert big.status_code == 413
    client.chat.completions.create(model="policy", messages=[{"role": "user", "content": "hi"}], max_tokens=10_000)
    assert len(session.calls[-1].completion_ids) <= 24  # the proxy's cap, not the client's ask
    assert [c.status for c in session.calls] == ["rejected", "ok"]
    server.sessions.close(session.token)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_continuing_requests_are_spliced_token_exact(server) -> None:
    session = server.sessions.open("episode-splice")
    client = client_for(server, session.token)
    messages = [{"role": "user", "content": "fix the bug"}]
    for step in range(3):
        reply = client.chat.completions.create(model="policy", messages=messages, tools=TOOLS, max_tokens=8)
        messages.append(reply.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "user", "content": f"observation {step} <|im_end|> not a boundary"})
    calls = session.calls
    assert [c.prompt_source for c in calls] == ["rendered", "spliced", "spliced"]
    for before, after in zip(calls, calls[1:]):
        assert after.prompt_ids[: len(before.prompt_ids) + len(before.completion_ids)] == \
            before.prompt_ids + before.completion_ids
    im_end = server.service.policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    bridge = calls[1].prompt_ids[len(calls[0].prompt_ids) + len(calls[0].completion_ids):]
    # the observation's "<|im_end|>" stayed text: only the template closes turns (the assistant's, unless the model
    # closed it itself, and the user's)
    assert bridge.count(im_end) == (1 if calls[0].completion_ids[-1] == im_end else 2)
    trajectory = build_trajectory(calls, trajectory_id="t-splice")
    assert [t.fork for t in trajectory.turns] == [False, False, False]
    assert len(training_sequences(trajectory)) == 1
    assert trajectory.turns[0].observation.startswith("observation 0")
    assert_trained_equals_served(trajectory, calls)


def test_rewritten_history_is_a_fork_and_never_trained_across(server) -> None:
    session = server.sessions.open("episode-rewrite")
    client = client_for(server, session.token)
    messages = [{"role": "user", "content": "task"}]
    reply = client.chat.completions.create(model="policy", messages=messages, max_tokens=8)
    messages += [reply.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "more"}]
    client.chat.completions.create(model="policy", messages=messages, max_tokens=8)
    summary = [{"role": "user", "content": "task (summary of earlier turns: none useful)"}]  # the agent compacts
    client.chat.completions.create(model="policy", messages=summary, max_tokens=8)
    calls = session.calls
    assert [c.prompt_source for c in calls] == ["rendered", "spliced", "rendered"]
    trajectory = build_trajectory(calls, trajectory_id="t-rewrite")
    assert [t.fork for t in trajectory.turns] == [False, False, True]
    assert len(training_sequences(trajectory)) == 2
    assert_trained_equals_served(trajectory, calls)


def test_a_template_that_rerenders_earlier_tokens_is_detected_as_a_fork(engine, tokenizer) -> None:
    import copy

    counting = copy.deepcopy(tokenizer)
    counting.chat_template = COUNTING_TEMPLATE
    server = serve(engine, counting)
    try:
        session = server.sessions.open("episode-counting")
        client = client_for(server, session.token)
        messages = [{"role": "user", "content": "task"}]
        for _ in range(2):
            reply = client.chat.completions.create(model="policy", messages=messages, max_tokens=8)
            messages += [reply.choices[0].message.model_dump(exclude_none=True), {"role": "user", "content": "go"}]
        first, second = session.calls
        assert second.prompt_source == "rendered"  # no exact extension exists under this template
        assert second.prompt_ids[: len(first.prompt_ids)] != first.prompt_ids
        trajectory = build_trajectory(session.calls, trajectory_id="t-counting")
        assert [t.fork for t in trajectory.turns] == [False, True]
        sequences = training_sequences(trajectory)
        assert [s.input_ids for s in sequences] == [c.prompt_ids + c.completion_ids for c in session.calls]
        assert_trained_equals_served(trajectory, session.calls)
    finally:
        server.stop()
