"""Bookkeeping of the rollout scheduler: groups of samples of one task, the task stream, per-step counters."""
from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from iflow.trajectory import Trajectory
from roll.rollout.episode import EpisodeResult
from roll.tasks.schema import TaskRecord


class TaskStream:
    """Tasks in a seeded random order, reshuffled every pass (or in file order with shuffle=False). Tasks put back
    with `requeue` (drawn by groups a resumed run never finished) come out first, without counting as new draws."""

    def __init__(self, tasks: Sequence[TaskRecord], seed: int = 0, shuffle: bool = True) -> None:
        if not tasks:
            raise ValueError("no tasks to roll out")
        self.tasks = list(tasks)
        self.rng = random.Random(seed)
        self.shuffle = shuffle
        self.order: list[int] = []
        self.drawn = 0
        self.requeued: deque[TaskRecord] = deque()
        self._by_id = {task.id: task for task in reversed(self.tasks)}  # the first task of an id wins

    def requeue(self, task_ids: Sequence[str]) -> None:
        missing = [task_id for task_id in task_ids if task_id not in self._by_id]
        if missing:
            raise ValueError(f"cannot requeue tasks that are not in the task set: {missing[:5]}")
        self.requeued.extend(self._by_id[task_id] for task_id in task_ids)

    def next(self) -> TaskRecord:
        if self.requeued:
            return self.requeued.popleft()
        if not self.order:
            self.order = list(range(len(self.tasks)))
            if self.shuffle:
                self.rng.shuffle(self.order)
            self.order.reverse()
        self.drawn += 1
        return self.tasks[self.order.pop()]


@dataclass
class Group:
    id: str
    task: TaskRecord
    size: int
    engine: int
    results: dict[int, EpisodeResult] = field(default_factory=dict)
    attempts: Counter = field(default_factory=Counter)
    inflight: set[int] = field(default_factory=set)
    dropped: bool = False
    launch_version: int = 0
    index: int = 0  # the scheduler's running count: groups are made (and their tasks drawn) in this order
    anchors: list[int] = field(default_factory=list)  # resampling: expert turns each sample replays (empty: none)
    expert: Trajectory | None = None  # ... from this trajectory

    @property
    def complete(self) -> bool:
        return len(self.results) == self.size and not self.inflight

    def min_version(self) -> int:
        """The oldest policy version that produced any token of the group (launch version if none)."""
        versions = [v for r in self.results.values() for v in r.trajectory.metadata.get("policy_versions", [])[:1]]
        return min(versions) if versions else self.launch_version

    def trajectories(self) -> list[Trajectory]:
        return [self.results[i].trajectory for i in sorted(self.results)]


@dataclass
class StepCounters:
    """What happened while one batch was collected."""

    episodes_run: int = 0
    filtered: Counter = field(default_factory=Counter)   # unreliable episodes discarded, by kind
    replaced: int = 0                                    # ... of which replaced by a fresh sample of the same task
    dropped_groups: int = 0                              # groups dropped because the replacement budget ran out
    stale_dropped: int = 0                               # episodes dropped for exceeding the staleness bound
    stale_recomputed: int = 0                            # ... or re-run with fresh weights
    hung: int = 0
    workers_restarted: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"episodes_run": self.episodes_run, "filtered": sum(self.filtered.values()),
                "filtered_by_kind": dict(self.filtered), "replaced": self.replaced,
                "dropped_groups": self.dropped_groups, "stale_dropped": self.stale_dropped,
                "stale_recomputed": self.stale_recomputed, "hung": self.hung,
                "workers_restarted": self.workers_restarted, "cancelled": self.cancelled}


@dataclass
class RolloutBatch:
    """One step's data: `groups_per_step` complete groups of `group_size` trajectories each, and statistics."""

    groups: list[list[Trajectory]]
    stats: dict[str, Any]
    policy_version: int
    discarded: list[Trajectory] = field(default_factory=list)  # filtered / stale episodes, for inspection

    @property
    def trajectories(self) -> list[Trajectory]:
        return [t for group in self.groups for t in group]


def batch_stats(groups: list[list[Trajectory]], counters: StepCounters, seconds: float,
                policy_version: int) -> dict[str, Any]:
    trajectories = [t for g in groups for t in g]
    rewards = [t.reward or 0.0 for t in trajectories]
    tokens = sum(len(turn.completion_ids) for t in trajectories for turn in t.turns)
    versions = [v for t in trajectories for v in t.metadata.get("policy_versions", [])]
    n = len(trajectories)
    plain = [t for t in trajectories if not t.metadata.get("prefix_turns")]  # not started from an expert prefix

    def solved(ts: list[Trajectory]) -> float | None:
        return sum((t.reward or 0.0) >= 1.0 for t in ts) / len(ts) if ts else None

    return {
        "episodes": n, "groups": len(groups), "success_rate": sum(r >= 1.0 for r in rewards) / n if n else 0.0,
        "mean_reward": sum(rewards) / n if n else 0.0, "completion_tokens": tokens,
        "mean_turns": sum(len(t.turns) for t in trajectories) / n if n else 0.0,
        "seconds": seconds, "episodes_per_s": n / seconds if seconds > 0 else 0.0,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0, "policy_version": policy_version,
        "min_sample_version": min(versions) if versions else None,
        "resampled_episodes": n - len(plain), "plain_success_rate": solved(plain), **counters.as_dict(),
    }
