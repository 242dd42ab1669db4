"""An agent inside a `network_mode: none` sandbox reaches its proxy session through the mounted unix socket and the
loopback shim, and nothing else: not another session, not any other address."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from roll.proxy.config import ProxyConfig
from roll.proxy.sandbox_link import agent_env, new_socket_path, proxy_volumes, start_shim
from roll.proxy.server import ProxyServer
from roll.proxy.trajectory import build_trajectory
from tests.roll.test_proxy_scripted import FakeScriptedPolicy

AGENT = r'''
import json, os, socket, urllib.request, urllib.error
base, key = os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"]
def chat(messages, url=base, key=key):
    request = urllib.request.Request(url + "/chat/completions", headers={"Content-Type": "application/json",
        "Authorization": "Bearer " + key}, data=json.dumps({"model": "policy", "messages": messages,
        "max_tokens": 8}).encode())
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, None
messages = [{"role": "user", "content": "hello from the sandbox"}]
statuses = []
for _ in range(2):
    status, reply = chat(messages)
    statuses.append(status)
    messages += [reply["choices"][0]["message"], {"role": "user", "content": "go on"}]
other_base = base.split("/s/")[0] + "/s/" + os.environ["OTHER_TOKEN"] + "/v1"
stolen = chat(messages[:1], url=other_base, key="x")[0]
guessed = chat(messages[:1], url=base.split("/s/")[0] + "/v1", key="guessed-token")[0]
try:
    socket.create_connection(("203.0.113.1", 80), 2).close()
    outside = "connected"
except OSError as exc:
    outside = type(exc).__name__
print(json.dumps({"statuses": statuses, "other_session_unreachable_by_path": stolen, "guessed": guessed,
                  "outside": outside}))
'''


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path):
    from roll.engines.actor import build_engine
    from roll.engines.config import EngineConfig

    built = build_engine(tiny_model_path, EngineConfig(backend="hf", max_model_len=768))
    yield built
    built.close()


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


async def in_sandbox(image: str, socket_path: Path, work) -> object:
    from rock.aio import AsyncSandbox
    from rock.config import SandboxConfig

    config = SandboxConfig(image=image, volumes=proxy_volumes(socket_path))
    async with AsyncSandbox(config) as sandbox:
        assert sandbox.config.network_mode == "none"
        return await work(sandbox)


def test_an_agent_in_a_networkless_sandbox_reaches_only_its_session(sandbox_image, engine, tokenizer) -> None:
    from roll.engines.policy import LocalTokenPolicy

    socket_path = new_socket_path()
    with ProxyServer(LocalTokenPolicy(engine, tokenizer), ProxyConfig(max_tokens=8, max_model_len=768),
                     uds=socket_path) as server:
        mine, other = server.sessions.open("episode-in-sandbox"), server.sessions.open("someone-else")
        server.sessions.close(other.token)  # a closed session answers no one, even with its token

        async def work(sandbox):
            await start_shim(sandbox)
            await sandbox.write_file("/tmp/agent.py", AGENT)
            env = " ".join(f"{k}={v}" for k, v in {**agent_env(mine.token), "OTHER_TOKEN": other.token}.items())
            return await sandbox.run(f"env {env} python3 /tmp/agent.py", timeout=120)

        result = asyncio.run(in_sandbox(sandbox_image, socket_path, work))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report == {"statuses": [200, 200], "other_session_unreachable_by_path": 401, "guessed": 401,
                      "outside": report["outside"]}
    assert report["outside"] != "connected"
    assert [c.status for c in mine.calls] == ["ok", "ok"]
    assert [c.prompt_source for c in mine.calls] == ["rendered", "spliced"]
    assert "hello from the sandbox" in tokenizer.decode(mine.calls[0].prompt_ids)
    assert other.calls == []


def test_the_agent_image_has_the_iflow_cli_and_no_heavy_stack(agent_image) -> None:
    from rock.engine import client

    script = ("iflow --help >/dev/null && echo cli-ok; "
              "/opt/iflow/bin/python -c 'import iflow.cli, sys; print(sorted(m for m in (\"torch\", "
              "\"transformers\", \"vllm\", \"numpy\") if m in sys.modules))'; "
              "for m in torch transformers vllm; do /opt/iflow/bin/python -c \"import $m\" 2>/dev/null "
              "&& echo has-$m; done; python3 -c 'import typer' 2>/dev/null && echo system-python-changed; true")
    out = client().containers.run(agent_image, ["bash", "-c", script], network_mode="none", remove=True).decode()
    assert out.split() == ["cli-ok", "[]"], out  # the agent's own python3 is Debian's, untouched


def test_the_iflow_cli_works_through_the_proxy(agent_image, tokenizer) -> None:
    script = ['<tool_call>\n{"name": "bash", "arguments": {"command": "echo solved > answer.txt"}}\n</tool_call>',
              '<tool_call>\n{"name": "submit", "arguments": {}}\n</tool_call>']
    socket_path = new_socket_path()
    with ProxyServer(FakeScriptedPolicy(tokenizer, script), ProxyConfig(max_tokens=64), uds=socket_path) as server:
        session = server.sessions.open("episode-iflow")

        async def work(sandbox):
            await start_shim(sandbox)
            env = " ".join(f"{k}={v}" for k, v in agent_env(session.token).items())
            run = await sandbox.run(f"env {env} iflow -p 'write answer.txt' --until-submit --tool-format hermes --approval-mode yolo "
                                    "--session-dir /tmp/iflow-sessions", timeout=60)
            listing = await sandbox.run("ls -la /workspace; cat /workspace/answer.txt", timeout=10)
            return run, listing.output

        run, answer = asyncio.run(in_sandbox(agent_image, socket_path, work))
    assert run.exit_code == 0, run.output
    assert answer.endswith("solved\n"), run.output
    trajectory = build_trajectory(session.calls, trajectory_id="t-iflow")
    assert [t.tool_call.name for t in trajectory.turns] == ["bash", "submit"]
    assert [t.fork for t in trajectory.turns] == [False, False]
    assert [c.prompt_source for c in session.calls] == ["rendered", "spliced"]
    assert "(no output)" in trajectory.turns[0].observation  # what the CLI reported back
