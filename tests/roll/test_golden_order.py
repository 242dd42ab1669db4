"""Golden trajectories come out in task order whatever order their sandboxes finish in: SFT draws its batches by
index, so this is what makes the same seed give the same SFT checkpoint on another machine."""
from __future__ import annotations

import asyncio

import pytest


@pytest.mark.docker
def test_golden_file_is_in_task_order_when_the_first_episode_finishes_last(sandbox_image, tiny_model_path,
                                                                          tmp_path, monkeypatch) -> None:
    from iflow.trajectory import load_jsonl
    from roll.rollout.episode import EpisodeRunner
    from roll.tasks import golden, relay

    options = relay.RelayOptions(hops=1)
    tasks = golden.golden_tasks(3, seed=8, options=options)
    real_run = EpisodeRunner.run
    finished: list[str] = []

    async def first_one_late(self, task, *args, **kwargs):
        if task.id == tasks[0].id:
            await asyncio.sleep(8.0)  # the others, run beside it, finish first
        result = await real_run(self, task, *args, **kwargs)
        finished.append(task.id)
        return result

    monkeypatch.setattr(EpisodeRunner, "run", first_one_late)
    path = tmp_path / "golden.jsonl"
    report = golden.write_golden(path, 3, seed=8, model_path=tiny_model_path, options=options, concurrency=3,
                                 progress=False)
    assert report["written"] == 3 and finished[-1] == tasks[0].id
    assert [t.task_id for t in load_jsonl(path)] == [t.id for t in tasks]
