"""What a resumed run gets back besides weights: the tasks of groups generated ahead under async rollout (drawn, not
yet trained) are rolled out again first, and the LR schedule keeps the horizon fixed at the first start.
The end-to-end resume at staleness 1 is in test_train_e2e.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from roll.config import load_config
from roll.rollout.groups import TaskStream
from roll.rollout.scheduler import RolloutScheduler
from roll.run_state import lr_horizon, restore_scheduler, scheduler_state
from roll.tasks.secret_word import generate
from roll.trainer.actor import lr_lambda

TASKS = list(generate(7, seed=5))


def _scheduler() -> RolloutScheduler:
    """A real scheduler that is never started: groups are made by hand, as the loop would make them."""
    cfg = load_config("rollout", ["rollout.staleness=1", "rollout.groups_per_step=2"])
    fake_engines = SimpleNamespace(actors=[object()])  # stands in for the engine group: only its size is read
    return RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, "unused", fake_engines, TASKS, seed=3)


def test_groups_generated_ahead_are_rolled_out_again_after_resume() -> None:
    uninterrupted = _scheduler()
    expected = [uninterrupted._new_group().task.id for _ in range(8)]

    run = _scheduler()
    groups = [run._new_group() for _ in range(4)]
    for trained in groups[:2]:  # step 1 took the first two; the next two were generated ahead (staleness 1)
        del run.active[trained.id]
    state = scheduler_state(run)  # the checkpoint after step 1
    assert state["pending"] == [g.task.id for g in groups[2:]]

    resumed = _scheduler()
    restore_scheduler(resumed, state)
    again = [resumed._new_group() for _ in range(6)]
    assert [g.task.id for g in groups[:2] + again] == expected  # nothing skipped, nothing repeated
    assert [g.index for g in again] == [4, 5, 6, 7, 8, 9] and resumed.stream.drawn == 8


def test_pending_tasks_still_queued_at_a_checkpoint_stay_pending() -> None:
    run = _scheduler()
    run.stream.requeue([TASKS[3].id, TASKS[1].id])
    first = run._new_group()
    assert first.task.id == TASKS[3].id
    assert scheduler_state(run)["pending"] == [TASKS[3].id, TASKS[1].id]  # in flight, then still queued


def test_requeue_refuses_unknown_tasks() -> None:
    with pytest.raises(ValueError, match="not in the task set"):
        TaskStream(TASKS).requeue(["no-such-task"])


def test_lr_horizon_is_fixed_at_the_first_start() -> None:
    first = load_config("train", ["loop.steps=4", "trainer.lr_schedule=linear"])
    horizon, warning = lr_horizon(first, None)
    assert (horizon, warning) == (4, None)
    extended = load_config("train", ["loop.steps=6", "trainer.lr_schedule=linear"])
    kept, warning = lr_horizon(extended, {"lr_horizon": horizon})
    assert kept == 4 and "past the LR schedule's horizon of 4" in warning and "last 2 run at its final LR" in warning
    before, after = lr_lambda(first.trainer, horizon), lr_lambda(extended.trainer, kept)
    assert [after(s) for s in range(4)] == [before(s) for s in range(4)]  # the steps taken keep their LRs
    assert after(4) == after(5) == before(4) == 0.0  # a constant tail at the schedule's final LR
    assert lr_horizon(load_config("train", ["loop.steps=6"]), {"lr_horizon": 4})[1] is None  # constant: no warning
