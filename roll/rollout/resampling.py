"""Chunk-level initialized resampling (§3.2.4) for the rollout scheduler: which groups start from an expert prefix,
and from which anchor.

The resampler keeps, per task, its expert trajectory (from `resampling.data`, or its first solved rollout) and the
success rate of rollouts started from each anchor a (a = 0: a plain rollout; a = k: the expert's first k turns
replayed, the policy continues). A task is hard while its plain success rate is below `max_success`. Up to
`fraction` of the groups made go to hard tasks; a resampled group's samples start from
- anchors = "parallel": anchors spread over the expert's K chunks (`ipa.parallel_anchors`) while the task has no
  measured fork, then all from the crucial fork `ipa.crucial_fork` finds in the per-anchor success rates;
- anchors = "rollback": one anchor for the whole group, K-1 first; once the policy's success rate from it reaches
  `rollback_threshold` the next group starts `rollback_step` chunks earlier (`ipa.rollback_anchors`), until 0.
Pure bookkeeping: the scheduler asks `plan_group` when it makes a group and tells `record` every kept result.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ipa import crucial_fork, parallel_anchors, rollback_anchors, success_rates
from iflow.trajectory import Trajectory, load_jsonl
from roll.rollout.config import ResamplingConfig
from roll.tasks.schema import TaskRecord

SOLVED = 1.0


@dataclass
class GroupPlan:
    task: TaskRecord
    anchors: list[int]  # per sample: expert turns replayed before the policy takes over (0: none)
    expert: Trajectory | None = None

    @property
    def resampled(self) -> bool:
        return any(self.anchors)


@dataclass
class TaskHistory:
    outcomes: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))  # anchor -> rewards
    fork: int | None = None  # parallel: the crucial fork once measured (-1: none found)
    rollback: int | None = None  # rollback: the anchor the next group starts from

    def rate(self, anchor: int = 0) -> float | None:
        values = self.outcomes.get(anchor)
        return sum(v >= SOLVED for v in values) / len(values) if values else None


def load_experts(paths: list[str]) -> dict[str, Trajectory]:
    """The first solved trajectory of each task in the files (a missing file is an error naming it)."""
    experts: dict[str, Trajectory] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"rollout.resampling.data: no such file {path}")
        for trajectory in load_jsonl(path):
            if (trajectory.reward or 0.0) >= SOLVED and trajectory.task_id not in experts:
                experts[trajectory.task_id] = trajectory
    return experts


def expert_chunks(expert: Trajectory) -> int:
    return sum(1 for turn in expert.turns if turn.completion_ids)


class Resampler:
    def __init__(self, cfg: ResamplingConfig, group_size: int, seed: int = 0,
                 experts: dict[str, Trajectory] | None = None) -> None:
        self.cfg = cfg
        self.group_size = group_size
        self.experts = dict(experts if experts is not None else load_experts(cfg.data))
        self.history: dict[str, TaskHistory] = defaultdict(TaskHistory)
        self.tasks: dict[str, TaskRecord] = {}
        self.groups = self.resampled_groups = 0
        self.generator = torch.Generator().manual_seed(seed)

    # ---- choosing ---------------------------------------------------------------------------------------------
    def hard_tasks(self) -> list[str]:
        """Tasks with an expert of 2+ chunks whose plain success rate is below max_success, hardest first."""
        hard = [(rate, task_id) for task_id, h in self.history.items()
                if (rate := h.rate(0)) is not None and rate < self.cfg.max_success
                and task_id in self.experts and expert_chunks(self.experts[task_id]) >= 2]
        return [task_id for _, task_id in sorted(hard)]

    def plan_group(self, next_task: Callable[[], TaskRecord]) -> GroupPlan:
        """The task of the next group and each sample's anchor; `next_task` draws a fresh task from the stream."""
        self.groups += 1
        hard = self.hard_tasks()
        if hard and self.resampled_groups + 1 <= self.cfg.fraction * self.groups:
            task_id = hard[self.resampled_groups % len(hard)]  # round-robin over the hard tasks
            anchors = self.anchors_for(task_id)
            if any(anchors):
                self.resampled_groups += 1
                return GroupPlan(self.tasks[task_id], anchors, self.experts[task_id])
        task = next_task()
        self.tasks[task.id] = task
        return GroupPlan(task, [0] * self.group_size)

    def anchors_for(self, task_id: str) -> list[int]:
        history, K, n = self.history[task_id], expert_chunks(self.experts[task_id]), self.group_size
        if self.cfg.anchors == "rollback":
            if history.rollback is None:
                history.rollback = int(rollback_anchors(K, self.cfg.rollback_step, 1)[0])
            return [history.rollback] * n
        if history.fork is not None and history.fork > 0:
            return [history.fork] * n
        spread = parallel_anchors(K, n, self.cfg.anchor_mode, self.generator).tolist()
        return [int(spread[i % len(spread)]) for i in range(n)]

    # ---- learning from results ---------------------------------------------------------------------------------
    def record(self, task: TaskRecord, anchors: list[int], sample: int, trajectory: Trajectory) -> None:
        """A kept result of sample `sample` of a group planned with `anchors`."""
        self.tasks.setdefault(task.id, task)
        reward = trajectory.reward or 0.0
        anchor = anchors[sample] if sample < len(anchors) else 0
        history = self.history[task.id]
        history.outcomes[anchor].append(reward)
        if self.cfg.from_successes and reward >= SOLVED and task.id not in self.experts:
            self.experts[task.id] = trajectory

    def group_done(self, task: TaskRecord, anchors: list[int]) -> None:
        """After a resampled group's last result: update the task's fork or rollback anchor."""
        if not any(anchors):
            return
        history = self.history[task.id]
        if self.cfg.anchors == "rollback":
            rate = history.rate(anchors[0])
            if rate is not None and rate >= self.cfg.rollback_threshold:
                history.rollback = max(0, anchors[0] - self.cfg.rollback_step)
            return
        measured = sorted(history.outcomes)
        rates = success_rates(*self._outcome_tensors(history, measured), len(measured))
        history.fork = crucial_fork(torch.tensor(measured), rates)

    @staticmethod
    def _outcome_tensors(history: TaskHistory, anchors: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        outcomes = [float(v >= SOLVED) for a in anchors for v in history.outcomes[a]]
        index = [i for i, a in enumerate(anchors) for _ in history.outcomes[a]]
        return torch.tensor(outcomes), torch.tensor(index, dtype=torch.long)
