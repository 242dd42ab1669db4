"""The resampler's rules (roll/rollout/resampling.py): which groups start from an expert prefix, and where."""
from __future__ import annotations

import pytest

from iflow.trajectory import Trajectory, Turn, save_jsonl
from roll.rollout.config import ResamplingConfig
from roll.rollout.resampling import Resampler, load_experts
from roll.tasks import relay


def _tasks(n: int = 3):
    return list(relay.generate(n, seed=3, split="train", options=relay.RelayOptions(hops=2)))


def _expert(task_id: str, chunks: int = 4, reward: float = 1.0) -> Trajectory:
    turns = [Turn(index=i, completion_text=f"turn {i}", completion_ids=[10 + i, 2]) for i in range(chunks)]
    return Trajectory(id=f"golden-{task_id}", task_id=task_id, turns=turns, reward=reward)


def _result(task_id: str, reward: float) -> Trajectory:
    return Trajectory(id=f"r-{task_id}", task_id=task_id, reward=reward)


def _stream(tasks):
    queue = list(tasks)
    return lambda: queue.pop(0)


def _fail_plainly(resampler: Resampler, task, samples: int = 4) -> None:
    for sample in range(samples):
        resampler.record(task, [0] * samples, sample, _result(task.id, 0.0))


def test_groups_are_plain_until_a_hard_task_with_an_expert_is_known():
    tasks = _tasks()
    resampler = Resampler(ResamplingConfig(enabled=True, fraction=1.0), 4,
                          experts={tasks[0].id: _expert(tasks[0].id)})
    next_task = _stream(tasks)
    first = resampler.plan_group(next_task)
    assert first.task.id == tasks[0].id and first.anchors == [0, 0, 0, 0] and not first.resampled
    _fail_plainly(resampler, tasks[0])
    resampled = resampler.plan_group(next_task)
    assert resampled.task.id == tasks[0].id and resampled.expert.id == f"golden-{tasks[0].id}"
    assert resampled.anchors == [0, 1, 2, 3]  # parallel initialization: uniform over the expert's 4 chunks


def test_a_task_without_an_expert_or_that_succeeds_is_not_resampled():
    tasks = _tasks()
    resampler = Resampler(ResamplingConfig(enabled=True, fraction=1.0, from_successes=False), 4,
                          experts={tasks[1].id: _expert(tasks[1].id), tasks[2].id: _expert(tasks[2].id, chunks=1)})
    next_task = _stream(tasks * 2)
    for _ in range(3):
        resampler.plan_group(next_task)
    _fail_plainly(resampler, tasks[0])  # hard, but no expert
    _fail_plainly(resampler, tasks[2])  # hard, but a one-chunk expert has no prefix to replay
    for sample in range(4):
        resampler.record(tasks[1], [0] * 4, sample, _result(tasks[1].id, 1.0))  # solved: not hard
    assert resampler.hard_tasks() == [] and not resampler.plan_group(next_task).resampled


def test_the_crucial_fork_is_where_success_jumps():
    task = _tasks(1)[0]
    resampler = Resampler(ResamplingConfig(enabled=True, fraction=1.0), 4, experts={task.id: _expert(task.id)})
    resampler.plan_group(_stream([task]))
    _fail_plainly(resampler, task)
    plan = resampler.plan_group(_stream([]))
    for sample, reward in enumerate([0.0, 0.0, 1.0, 1.0]):  # from anchors 0, 1, 2, 3
        resampler.record(task, plan.anchors, sample, _result(task.id, reward))
    resampler.group_done(task, plan.anchors)
    assert resampler.history[task.id].fork == 1  # the policy fails from c_2 on its own: resample right before it
    assert resampler.plan_group(_stream([])).anchors == [1, 1, 1, 1]


def test_rollback_starts_at_the_last_chunk_and_moves_back_while_the_policy_succeeds():
    task = _tasks(1)[0]
    cfg = ResamplingConfig(enabled=True, fraction=1.0, anchors="rollback", rollback_threshold=0.5)
    resampler = Resampler(cfg, 2, experts={task.id: _expert(task.id)})
    resampler.plan_group(_stream([task]))
    _fail_plainly(resampler, task, 2)
    seen = []
    for rewards in ([1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]):
        plan = resampler.plan_group(_stream([]))
        seen.append(plan.anchors)
        for sample, reward in enumerate(rewards):
            resampler.record(task, plan.anchors, sample, _result(task.id, reward))
        resampler.group_done(task, plan.anchors)
    # K-1 = 3 solved -> 2; 2 at 1/2 >= threshold -> 1; 1 fails -> stays at 1
    assert seen == [[3, 3], [2, 2], [1, 1], [1, 1]]


def test_fraction_bounds_the_share_of_resampled_groups():
    tasks = _tasks(3)
    resampler = Resampler(ResamplingConfig(enabled=True, fraction=0.5), 4, experts={tasks[0].id: _expert(tasks[0].id)})
    next_task = _stream(tasks * 10)
    resampler.plan_group(next_task)
    _fail_plainly(resampler, tasks[0])
    plans = [resampler.plan_group(next_task).resampled for _ in range(8)]
    assert sum(plans) == 4 and resampler.resampled_groups / resampler.groups <= 0.5


def test_a_solved_rollout_becomes_the_expert_of_its_task():
    task = _tasks(1)[0]
    resampler = Resampler(ResamplingConfig(enabled=True), 2, experts={})
    solved = _expert(task.id)
    resampler.record(task, [0, 0], 0, solved)
    assert resampler.experts[task.id] is solved


def test_expert_files_keep_the_first_solved_trajectory_per_task(tmp_path):
    path = tmp_path / "golden.jsonl"
    save_jsonl([_expert("a", reward=0.0), _expert("a", chunks=3), _expert("a", chunks=2), _expert("b")], path)
    experts = load_experts([str(path)])
    assert sorted(experts) == ["a", "b"] and len(experts["a"].turns) == 3
    with pytest.raises(FileNotFoundError, match="rollout.resampling.data: no such file"):
        load_experts([str(tmp_path / "missing.jsonl")])
