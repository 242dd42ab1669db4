"""A resampled episode in a real sandbox: the expert's first k turns are replayed into a fresh container (their
commands re-run), the policy continues, and only the policy's own turns reach the policy-gradient loss; a prefix
whose observations do not reproduce is refused."""
from __future__ import annotations

import asyncio

import pytest

from roll.tasks import relay

pytestmark = pytest.mark.docker


def _command(turn) -> str | None:
    return turn.tool_call.arguments.get("command") if turn.tool_call else None


def test_resampled_episode_replays_the_prefix_then_the_policy_finishes(sandbox_image, tiny_model_path) -> None:
    from transformers import AutoTokenizer

    from rock import SandboxPool
    from roll.config.loader import load_config
    from roll.rollout.episode import EpisodeRunner
    from roll.trainer.batch import build_samples

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    defaults = load_config("rollout")
    task = list(relay.generate(1, seed=11, split="dev", options=relay.RelayOptions(hops=2)))[0]

    async def run_all():
        pool = SandboxPool(defaults.sandbox, size=2)
        runner = EpisodeRunner(pool, defaults.agent)
        try:
            golden = (await runner.run(task, relay.ObservingExpert(task.instruction, tokenizer),
                                       trajectory_id="golden", group_id=task.id)).trajectory
            continuation = relay.ObservingExpert(task.instruction, tokenizer)
            continuation.commands = [_command(turn) for turn in golden.turns[:2]]  # what it would have run itself
            resampled = await runner.run(task, continuation, trajectory_id="resampled", group_id=task.id,
                                         prefix=(golden, 2))
            tampered = golden.model_copy(deep=True)
            tampered.turns[1].observation = "access code: zebra-11"
            refused = await runner.run(task, relay.ObservingExpert(task.instruction, tokenizer),
                                       trajectory_id="refused", group_id=task.id, prefix=(tampered, 2))
            return golden, resampled, refused, continuation
        finally:
            await asyncio.to_thread(pool.close)

    golden, resampled, refused, continuation = asyncio.run(run_all())
    assert golden.reward == 1.0 and len(golden.turns) == 4
    assert resampled.status == "ok" and resampled.trajectory.reward == 1.0, (resampled.status, resampled.error)
    turns = resampled.trajectory.turns
    assert [t.replayed for t in turns] == [True, True, False, False]
    assert [_command(t) for t in turns[:2]] == [f"cat {task.metadata['chain'][0]}", f"cat {task.metadata['chain'][1]}"]
    assert all(t.commands for t in turns[:2])  # re-run in this episode's own sandbox, not copied
    assert [t.observation for t in turns[:2]] == [t.observation for t in golden.turns[:2]]
    assert continuation.commands[2:] == [f"echo {task.metadata['code']} > answer.txt"]  # the policy wrote it

    sample = build_samples([resampled.trajectory], error_masking=False).samples[0]
    chunk_of = dict(zip(sample.turn_ids, sample.chunk_ids))
    trained_turns = {t for t, m in zip(sample.turn_ids, sample.loss_mask) if m}
    assert trained_turns == {2, 3} and chunk_of[0] == 0 and chunk_of[3] == 3  # the prefix still counts in K
    assert sample.trajectory_chunks == 4

    assert refused.status == "prefix_refused" and refused.trajectory.reward is None
    assert len(refused.trajectory.turns) == 2 and refused.trajectory.outcome == "terminated"
    assert "turn 1's observation differs" in refused.error
