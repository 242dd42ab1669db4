"""What an RL run keeps on disk besides checkpoints, so that nothing is lost on a crash:

- `trajectories/step_000007.jsonl`: the kept episodes of each step (written atomically after the rollout, before the
  update), `step_000007.filtered.jsonl` the discarded ones, and `step_000007.state.pt`: the rollout batch's stats
  and the task stream's position after it. A run resumed from the checkpoint of step 6 replays step 7's rollout
  from these files instead of generating it again: it was produced by exactly the checkpointed weights.
- the task stream position (the data position) is also part of every checkpoint, with the tasks drawn for groups
  that were generated ahead (async rollout) but not trained yet: a resumed run rolls those out again first.
- the LR schedule's horizon (optimizer steps it decays over) is fixed at the first start and kept in every
  checkpoint. A run resumed with more `loop.steps` keeps it, so the steps already taken keep their LRs; the steps
  past the horizon run at the schedule's final LR (a constant tail), and the resume says so. To plan a longer run,
  set `trainer.total_steps` at the first start.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from iflow.trajectory import load_jsonl
from roll.rollout.groups import RolloutBatch
from roll.rollout.records import write_records


def planned_updates(cfg: Any) -> int:
    """Optimizer steps the configured run takes: loop.steps x trainer.mini_batches x trainer.epochs."""
    return cfg.loop.steps * cfg.trainer.mini_batches * cfg.trainer.epochs


def lr_horizon(cfg: Any, saved: dict[str, Any] | None) -> tuple[int, str | None]:
    """The LR schedule's horizon for this start (the saved one on resume) and a warning when the run now goes past it.
    Checkpoints written before the horizon was saved fall back to the configured run."""
    planned = cfg.trainer.total_steps or planned_updates(cfg)
    if saved is None or "lr_horizon" not in saved:
        return planned, None
    horizon = int(saved["lr_horizon"])
    updates = planned_updates(cfg)
    if updates > horizon and cfg.trainer.lr_schedule != "constant":
        return horizon, (f"loop.steps={cfg.loop.steps} runs {updates} optimizer steps, past the LR schedule's horizon "
                         f"of {horizon} fixed at the first start: the last {updates - horizon} run at its final LR "
                         f"(set trainer.total_steps at the first start to plan a longer run)")
    return horizon, None


def scheduler_state(scheduler: Any) -> dict[str, Any]:
    """The task stream's position (its RNG, the rest of the current pass, tasks drawn, groups made) and the tasks
    drawn but not yet trained on (`pending`: groups generated ahead under async rollout), read on the scheduler's
    loop so that no group is half-made."""
    def read() -> dict[str, Any]:
        stream = scheduler.stream
        return {"rng": stream.rng.getstate(), "order": list(stream.order), "drawn": stream.drawn,
                "groups_made": scheduler.groups_made, "pending": scheduler.unfinished_task_ids()}

    return scheduler.on_loop(read)


def restore_scheduler(scheduler: Any, state: dict[str, Any]) -> None:
    """Back to a saved position; its pending tasks are drawn again first (their groups were lost with the run)."""
    def write() -> None:
        stream = scheduler.stream
        stream.rng.setstate(state["rng"])
        stream.order = list(state["order"])
        stream.drawn = int(state["drawn"])
        stream.requeued.clear()
        stream.requeue(state.get("pending", []))
        scheduler.groups_made = int(state["groups_made"])

    scheduler.on_loop(write)


class TrajectoryStore:
    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir) / "trajectories"

    def _paths(self, step: int) -> tuple[Path, Path, Path]:
        stem = self.root / f"step_{step:06d}"
        return stem.with_suffix(".jsonl"), stem.with_suffix(".filtered.jsonl"), stem.with_suffix(".state.pt")

    def save(self, step: int, batch: RolloutBatch, stream_state: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        kept, filtered, state = self._paths(step)
        tmp = kept.with_name(f".{kept.name}.tmp")
        tmp.unlink(missing_ok=True)
        if batch.discarded:
            write_records(batch.discarded, filtered)
        torch.save({"stats": batch.stats, "policy_version": batch.policy_version, "stream": stream_state,
                    "group_sizes": [len(g) for g in batch.groups]}, state)
        write_records(batch.trajectories, tmp)
        with tmp.open("a") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, kept)  # the kept file appears only once complete: it marks the step's rollout as done
        return kept

    def load(self, step: int) -> tuple[RolloutBatch, dict[str, Any]] | None:
        """The saved rollout of `step` and the stream position after it, or None if it was not completed."""
        kept, _, state_path = self._paths(step)
        if not (kept.is_file() and state_path.is_file()):
            return None
        state = torch.load(state_path, weights_only=False)
        trajectories = list(load_jsonl(kept))
        groups, start = [], 0
        for size in state["group_sizes"]:
            groups.append(trajectories[start: start + size])
            start += size
        return RolloutBatch(groups, dict(state["stats"]), state["policy_version"]), state["stream"]

    def discard_after(self, step: int) -> None:
        """Drop the saved rollouts of steps after `step` (a resumed run regenerates them)."""
        if not self.root.is_dir():
            return
        for path in self.root.iterdir():
            name = path.name.lstrip(".")
            if name.startswith("step_") and int(name[5:11]) > step:
                path.unlink()
