"""agent=blackbox: a whole episode (pool, workspace, the iflow CLI in a network-none sandbox of the rock-agent image,
verifier, SafetyGuard) with the trajectory built from the proxy's records."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roll.config import load_config
from roll.proxy.config import BlackBoxAgentConfig, ProxyConfig
from roll.proxy.sandbox_link import new_socket_path, proxy_volumes
from roll.proxy.server import ProxyServer
from roll.rollout.blackbox import BlackBoxEpisodeRunner
from roll.safety import SafetyConfig
from roll.tasks.secret_word import SecretWordOptions, make_task
from tests.roll.test_proxy_scripted import FakeScriptedPolicy


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="module")
def proxy(tokenizer):
    with ProxyServer(None, ProxyConfig(max_tokens=64, max_model_len=768), uds=new_socket_path(),
                     tokenizer=tokenizer) as server:
        yield server


@pytest.fixture(scope="module")
def pool(agent_image, proxy):
    from rock import SandboxConfig, SandboxPool

    with SandboxPool(SandboxConfig(image=agent_image, volumes=proxy_volumes(proxy.uds)), size=1) as running:
        yield running


def agent_config() -> BlackBoxAgentConfig:
    """configs/agent/blackbox.yaml as `agent=blackbox` composes it."""
    agent = load_config("rollout", ["agent=blackbox", "engine.max_model_len=768"]).agent
    assert isinstance(agent, BlackBoxAgentConfig) and agent.proxy.max_model_len == 768
    return agent


def run(pool, proxy, task, policy, **runner):
    episode = BlackBoxEpisodeRunner(pool, agent_config(), proxy, safety=SafetyConfig(ebpf=False), **runner)
    return asyncio.run(episode.run(task, policy, trajectory_id=f"bb-{task.id}", group_id="g0"))


def test_a_black_box_agent_solves_the_task_and_is_verified(pool, proxy, tokenizer) -> None:
    task = make_task(0, options=SecretWordOptions(words=4, note_path="note.txt"))
    word = task.metadata["word"]
    policy = FakeScriptedPolicy(tokenizer, [
        '<tool_call>\n{"name": "bash", "arguments": {"command": "cat note.txt"}}\n</tool_call>',
        f'<tool_call>\n{{"name": "bash", "arguments": {{"command": "echo {word} > answer.txt"}}}}\n</tool_call>',
        '<tool_call>\n{"name": "submit", "arguments": {}}\n</tool_call>'])
    result = run(pool, proxy, task, policy)
    traj = result.trajectory
    assert result.status == "ok", result.error
    assert traj.outcome == "submitted" and traj.reward == 1.0, (traj.metadata.get("safety"), traj.all_events(), traj.reward_info)
    assert [t.tool_call.name for t in traj.turns] == ["bash", "bash", "submit"]
    assert word in traj.turns[0].observation  # the note's text came back to the model
    assert [t.fork for t in traj.turns] == [False, False, False]
    assert traj.metadata["agent"] == "blackbox" and len(traj.metadata["proxy"]["calls"]) == 3
    assert traj.metadata["safety"]["mode"]  # the guard watched it
    assert traj.metadata["agent_command"]["exit_code"] == 0
    assert traj.metadata["verify_commands"]


def test_the_iflow_cli_through_the_proxy_sends_the_white_box_loops_tokens(pool, proxy, tokenizer) -> None:
    """Same task, same scripted completions: every prompt the proxy rendered from the black-box CLI's messages is,
    token for token, the prompt the white-box loop builds itself, and each trained token is a served one."""
    from iflow.config import AgentConfig
    from iflow.trajectory import training_sequences
    from roll.rollout.episode import EpisodeRunner

    task = make_task(4, options=SecretWordOptions(words=4, note_path="note.txt"))
    word = task.metadata["word"]
    script = ['<tool_call>\n{"name": "bash", "arguments": {"command": "cat note.txt"}}\n</tool_call>',
              'no tool call here',
              f'<tool_call>\n{{"name": "bash", "arguments": {{"command": "echo {word} > answer.txt"}}}}\n</tool_call>',
              '<tool_call>\n{"name": "submit", "arguments": {}}\n</tool_call>']
    black = run(pool, proxy, task, FakeScriptedPolicy(tokenizer, script)).trajectory
    config = agent_config()
    white_agent = AgentConfig.model_validate(config.model_dump(include=set(AgentConfig.model_fields)))
    white = asyncio.run(EpisodeRunner(pool, white_agent, safety=SafetyConfig(ebpf=False)).run(
        task, FakeScriptedPolicy(tokenizer, script), trajectory_id="wb", group_id="g0")).trajectory
    assert black.reward == white.reward == 1.0 and black.outcome == white.outcome == "submitted"
    assert len(black.turns) == len(white.turns) == 4
    for b, w in zip(black.turns, white.turns):
        assert b.prompt_ids == w.prompt_ids, (tokenizer.decode(b.prompt_ids), tokenizer.decode(w.prompt_ids))
        assert b.completion_ids == w.completion_ids and b.fork == w.fork is False
    assert black.turns[1].tool_call is None and "no tool call" in black.turns[1].observation  # the CLI's hint
    (sequence,) = training_sequences(black)  # no fork: one sequence; its trained tokens are the served ones
    trained = [token for token, turn in zip(sequence.input_ids, sequence.turn_ids) if turn >= 0]
    assert trained == [token for turn in black.turns for token in turn.completion_ids]


def test_the_episode_limits_bind_the_black_box_agent(pool, proxy, tokenizer) -> None:
    task = make_task(1, options=SecretWordOptions(words=4, note_path="note.txt", max_turns=2))
    policy = FakeScriptedPolicy(tokenizer, '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n'
                                           '</tool_call>')
    result = run(pool, proxy, task, policy)
    traj = result.trajectory
    assert result.status == "ok" and traj.reward == 0.0
    assert len(traj.turns) == 2  # the task's max_turns=2 tightened the config's 6: the third call got 429
    assert traj.metadata["proxy"]["statuses"] == {"ok": 2}
    assert traj.outcome in ("max_turns", "exited")


def test_a_real_engine_behind_a_black_box_episode(pool, proxy, tiny_model_path) -> None:
    from roll.engines.actor import build_engine
    from roll.engines.config import EngineConfig
    from roll.engines.policy import LocalTokenPolicy

    engine = build_engine(tiny_model_path, EngineConfig(backend="hf", max_model_len=768))
    try:
        task = make_task(2, options=SecretWordOptions(words=4, note_path="note.txt"))
        result = run(pool, proxy, task, LocalTokenPolicy(engine, proxy.service.tokenizer))
    finally:
        engine.close()
    traj = result.trajectory
    assert result.status in ("ok", "timeout"), result.error
    assert traj.turns and all(len(t.completion_ids) == len(t.logprobs) > 0 for t in traj.turns)
    assert sum(len(t.completion_ids) for t in traj.turns) <= 384
    assert {t.policy_version for t in traj.turns} == {0}
    assert traj.reward is not None


class RecordingPool:
    """The real pool, remembering the sandbox it handed out last (so the test can break it)."""

    def __init__(self, pool) -> None:
        self.pool, self.last = pool, None

    async def acquire_async(self, timeout: float = 120.0):
        self.last = await self.pool.acquire_async(timeout=timeout)
        return self.last

    async def release_async(self, sandbox, replace: bool = True) -> None:
        await self.pool.release_async(sandbox, replace)


def test_a_sandbox_that_dies_under_the_agent_is_a_sandbox_error(pool, proxy, tokenizer) -> None:
    recording = RecordingPool(pool)

    class ContainerKillingPolicy(FakeScriptedPolicy):
        async def generate(self, prompt_ids, sampling):
            recording.last.sync.container.remove(force=True)  # the container this test's episode runs in
            return await super().generate(prompt_ids, sampling)

    task = make_task(3, options=SecretWordOptions(words=4, note_path="note.txt"))
    result = run(recording, proxy, task, ContainerKillingPolicy(tokenizer))
    assert result.status == "sandbox_error", (result.status, result.error)
    assert result.trajectory.reward is None
