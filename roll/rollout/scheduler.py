"""The rollout scheduler: groups of n samples per task, a batch of groups per step, asynchronous generation with a
staleness bound, dynamic filtering of unreliable episodes, hung-environment replacement.

    scheduler = RolloutScheduler(cfg.rollout, cfg.agent, cfg.sandbox, model_path, engines, tasks, seed=cfg.run.seed)
    scheduler.start()
    for step in range(steps):
        batch = scheduler.collect(policy_version=step)   # RolloutBatch: .groups (list of lists of Trajectory),
        ...train on batch.groups...                      #   .trajectories, .stats (dict), .discarded
        engines.update_weights(model.state_dict(), version=step + 1)
    scheduler.close()

`collect(v)` returns `groups_per_step` complete groups whose every token came from a policy version >= v - staleness.
With staleness 0 nothing is generated between collects (synchronous RL). With staleness k > 0, generation continues
in the background while the caller trains (up to k batches ahead); groups that grew too old are dropped or
re-run (`stale_action`). An episode whose reward is unreliable (sandbox / setup / verifier / engine failure, hung
environment: `filter.discard`) is discarded and replaced by a fresh sample of the same task while the step's budget
(`filter.max_ratio` x episodes per step) lasts; past it the whole group is dropped and a new task takes its place.
Every discard is counted in `batch.stats`. mode=sync is the lockstep baseline (see roll/rollout/lockstep.py).

All scheduling runs on an asyncio loop in a background thread; `collect` blocks the caller until the batch is ready.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from iflow.config import AgentConfig
from iflow.trajectory import Trajectory
from roll.rollout.config import RolloutConfig
from roll.rollout.env_worker import create_env_worker
from roll.rollout.episode import EpisodeResult, episode_deadline
from roll.rollout.groups import Group, RolloutBatch, StepCounters, TaskStream, batch_stats
from roll.rollout.resampling import Resampler
from roll.tasks.schema import TaskRecord


class RolloutError(RuntimeError):
    pass


class RolloutScheduler:
    def __init__(self, rollout: RolloutConfig, agent: AgentConfig, sandbox: Any, model_path: Any, engines: Any,
                 tasks: Sequence[TaskRecord], seed: int = 0, shuffle: bool = True, request_timeout: float = 300.0,
                 on_episode: Callable[[EpisodeResult], None] | None = None) -> None:
        self.cfg = rollout
        self.agent = agent
        self.sandbox = sandbox
        self.model_path = str(model_path)
        self.engines = engines
        self.request_timeout = request_timeout
        self.stream = TaskStream(tasks, seed=seed, shuffle=shuffle)
        self.resampler = Resampler(rollout.resampling, rollout.group_size, seed) if rollout.resampling.enabled \
            else None
        self.on_episode = on_episode
        self.version = 0
        self.workers: list[Any] = []
        self.load: list[int] = []
        self.ready: deque[Group] = deque()
        self.active: dict[str, Group] = {}
        self.tasks: dict[tuple[str, int], asyncio.Task] = {}
        self.counters = StepCounters()
        self.discarded: list[Trajectory] = []
        self.budget = self._step_budget()
        self.collecting = False
        self.failure: BaseException | None = None
        self.groups_made = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rollout-scheduler", daemon=True)
        self._changed: asyncio.Event | None = None

    # ---- lifecycle --------------------------------------------------------------------------------------------
    def start(self, timeout: float = 300.0) -> RolloutScheduler:
        import ray

        self.workers = [self._new_worker(i) for i in range(self.cfg.num_env_workers)]
        self.load = [0] * len(self.workers)
        ray.get([w.ready.remote() for w in self.workers], timeout=timeout)
        self._thread.start()
        self._call(self._init_loop(), 30)
        return self

    def _new_worker(self, index: int) -> Any:
        return create_env_worker(index, self.model_path, self.sandbox, self.agent, self.cfg, self.engines.actors,
                                 self.request_timeout)

    async def _init_loop(self) -> None:
        self._changed = asyncio.Event()

    def _call(self, coroutine: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def on_loop(self, function: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run `function` on the scheduling loop (between its steps), or here when the loop is not running."""
        if not self._thread.is_alive():
            return function()

        async def call() -> Any:
            return function()

        return self._call(call(), timeout)

    def unfinished_task_ids(self) -> list[str]:
        """Tasks drawn for groups not yet handed to the trainer (generated ahead, or still running), in draw order,
        then tasks put back but not drawn again: what a run resumed from this moment must roll out again."""
        groups = sorted([g for g in [*self.ready, *self.active.values()] if not g.dropped], key=lambda g: g.index)
        return [g.task.id for g in groups] + [task.id for task in self.stream.requeued]

    def collect(self, policy_version: int | None = None, timeout: float | None = None) -> RolloutBatch:
        """Block until a batch is ready for `policy_version` (default: the engines' current version)."""
        version = self.engines.policy_version() if policy_version is None else int(policy_version)
        return self._call(self._collect(version), timeout)

    def close(self) -> None:
        import ray

        if self._thread.is_alive():
            try:
                self._call(self._cancel_all(), 60)
            except Exception:  # noqa: BLE001 - shutting down regardless
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
        for worker in self.workers:
            try:
                ray.get(worker.close.remote(), timeout=120)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(worker)
        self.workers = []

    def __enter__(self) -> RolloutScheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- collection -------------------------------------------------------------------------------------------
    def _step_budget(self) -> int:
        return int(self.cfg.filter.max_ratio * self.cfg.groups_per_step * self.cfg.group_size)

    async def _collect(self, version: int) -> RolloutBatch:
        self.version = version
        started = time.monotonic()
        if self.cfg.mode == "sync":
            groups = await self._collect_lockstep()
        else:
            self.collecting = True
            try:
                self._purge_stale()
                self._pump()
                while len(self.ready) < self.cfg.groups_per_step:
                    await self._wait_change()
                    self._purge_stale()
                    self._pump()
                groups = [self.ready.popleft() for _ in range(self.cfg.groups_per_step)]
            finally:
                self.collecting = False
            if self.cfg.staleness == 0:
                await self._cancel_all()
            else:
                self._pump()
        trajectories = [g.trajectories() for g in groups]
        stats = batch_stats(trajectories, self.counters, time.monotonic() - started, version)
        batch = RolloutBatch(trajectories, stats, version, self.discarded)
        self.counters, self.discarded, self.budget = StepCounters(), [], self._step_budget()
        return batch

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()
        self._changed.clear()
        if self.failure is not None:
            raise self.failure

    def _target(self) -> int:
        ahead = self.cfg.groups_per_step * self.cfg.staleness
        return ahead + (self.cfg.groups_per_step if self.collecting else 0)

    def _new_group(self) -> Group:
        plan = self.resampler.plan_group(self.stream.next) if self.resampler else None
        task = plan.task if plan else self.stream.next()
        index = self.groups_made
        self.groups_made += 1
        group = Group(f"g{index}-{task.id}", task, self.cfg.group_size, engine=index % len(self.engines.actors),
                      launch_version=self.version, index=index, anchors=plan.anchors if plan else [],
                      expert=plan.expert if plan else None)
        self.active[group.id] = group
        return group

    def _pump(self) -> None:
        while len(self.ready) + len(self.active) < self._target():
            self._new_group()
        for group in list(self.active.values()):
            for sample in range(group.size):
                if sum(self.load) >= self.cfg.max_concurrency:
                    return
                if sample not in group.results and sample not in group.inflight:
                    self._launch(group, sample)

    def _spec(self, group: Group, sample: int) -> dict[str, Any]:
        attempt = group.attempts[sample]
        spec = {"task": group.task.model_dump(mode="json"), "trajectory_id": f"{group.id}/s{sample}/a{attempt}",
                "group_id": group.id, "engine": group.engine,
                "metadata": {"sample_index": sample, "attempt": attempt, "launch_version": self.version}}
        anchor = group.anchors[sample] if group.anchors else 0
        if anchor and group.expert is not None:  # resampling: replay the expert's first `anchor` turns
            spec["prefix"] = {"trajectory": group.expert.model_dump(mode="json"), "turns": anchor}
            spec["metadata"].update(prefix_turns=anchor, prefix_of=group.expert.id)
        return spec

    def _limit(self, task: TaskRecord) -> float:
        """Seconds the scheduler waits for an env worker's answer before it counts the episode as hung."""
        own = self.cfg.episode_timeout or (episode_deadline(task, self.agent, self.cfg.hang_grace)
                                           + self.cfg.sandbox_acquire_timeout)
        return own + 60

    def _launch(self, group: Group, sample: int) -> None:
        worker = min(range(len(self.workers)), key=lambda i: self.load[i])
        group.inflight.add(sample)
        self.load[worker] += 1
        spec = self._spec(group, sample)
        self.tasks[(group.id, sample)] = self.loop.create_task(self._episode(group, sample, worker, spec))

    async def _episode(self, group: Group, sample: int, worker: int, spec: dict[str, Any]) -> None:
        limit = self._limit(group.task)
        import ray

        handle = self.workers[worker]
        ref = handle.run_episode.remote(spec)
        try:
            data = await asyncio.wait_for(ref, limit)
            result = EpisodeResult.from_dict(data)
        except asyncio.TimeoutError:
            ray.cancel(ref)
            result = self._failed(spec, "hung", f"no answer from env worker {worker} within {limit:g}s")
            await self._check_worker(worker, handle)
        except asyncio.CancelledError:
            ray.cancel(ref)  # the worker stops the episode and gives its sandbox back
            raise
        except Exception as exc:  # noqa: BLE001 - the worker died or broke
            result = self._failed(spec, "sandbox_error", f"env worker {worker} failed: {type(exc).__name__}: {exc}")
            await self._check_worker(worker, handle)
        finally:
            self.load[worker] -= 1
            group.inflight.discard(sample)
            self.tasks.pop((group.id, sample), None)
        self._on_result(group, sample, result)
        if self.cfg.mode == "async":
            self._pump()
        if self._changed is not None:
            self._changed.set()

    @staticmethod
    def _failed(spec: dict[str, Any], status: str, error: str) -> EpisodeResult:
        traj = Trajectory(id=spec["trajectory_id"], task_id=spec["task"]["id"], group_id=spec["group_id"],
                          task=spec["task"]["instruction"], outcome="error", error=error,
                          metadata={**spec["metadata"], "status": status, "status_error": error})
        return EpisodeResult(traj, status, error)

    async def _check_worker(self, index: int, handle: Any) -> None:
        """Replace an env worker that no longer answers (a hung environment takes its worker down with it)."""
        import ray

        if self.workers[index] is not handle:
            return  # already replaced
        try:
            await asyncio.wait_for(handle.ping.remote(), 15)
            return
        except Exception:  # noqa: BLE001 - unresponsive or dead: replace
            pass
        ray.kill(handle)
        self.workers[index] = self._new_worker(index)
        self.counters.workers_restarted += 1

    def _on_result(self, group: Group, sample: int, result: EpisodeResult) -> None:
        self.counters.episodes_run += 1
        if result.status == "hung":
            self.counters.hung += 1
        if self.on_episode is not None:
            self.on_episode(result)
        if group.dropped:
            return
        if self.cfg.filter.discards(result.status):
            self.counters.filtered[result.status] += 1
            self.discarded.append(result.trajectory)
            group.attempts[sample] += 1
            if self.budget > 0:
                self.budget -= 1
                self.counters.replaced += 1  # the sample stays missing: it is launched again
            else:
                self._drop(group)
            return
        if result.trajectory.reward is None:
            result.trajectory.reward = 0.0  # unreliable but kept (filtering off): scored as a failure
        group.results[sample] = result
        if self.resampler is not None:
            self.resampler.record(group.task, group.anchors, sample, result.trajectory)
        if group.complete and group.id in self.active:
            del self.active[group.id]
            self.ready.append(group)
            if self.resampler is not None:
                self.resampler.group_done(group.task, group.anchors)

    def _drop(self, group: Group) -> None:
        group.dropped = True
        self.active.pop(group.id, None)
        self.counters.dropped_groups += 1
        for sample in list(group.inflight):
            task = self.tasks.get((group.id, sample))
            if task is not None:
                task.cancel()
                self.counters.cancelled += 1
        limit = 2 * self.cfg.groups_per_step + 2
        if self.counters.dropped_groups > limit:
            errors = [t.metadata.get("status_error", t.error) for t in self.discarded[-3:]]
            self.failure = RolloutError(f"{self.counters.dropped_groups} groups dropped in one step (limit {limit}):"
                                        f" the environment keeps failing; last errors: {errors}")

    def _purge_stale(self) -> None:
        bound = self.version - self.cfg.staleness
        for group in [*self.ready, *self.active.values()]:
            stale = [s for s, r in group.results.items()
                     if (r.trajectory.metadata.get("policy_versions") or [group.launch_version])[0] < bound]
            if not stale:
                continue
            if self.cfg.stale_action == "drop":
                self.counters.stale_dropped += len(group.results)
                self.discarded.extend(group.trajectories())
                if group in self.ready:
                    self.ready.remove(group)
                self.active.pop(group.id, None)
                group.dropped = True
                for sample in list(group.inflight):
                    task = self.tasks.get((group.id, sample))
                    if task is not None:
                        task.cancel()
            else:
                for sample in stale:
                    self.discarded.append(group.results.pop(sample).trajectory)
                    self.counters.stale_recomputed += 1
                if group in self.ready:
                    self.ready.remove(group)
                    self.active[group.id] = group

    async def _cancel_all(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            self.counters.cancelled += len(tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
        for group in self.active.values():
            group.dropped = True
        self.active.clear()

    # ---- synchronous (lockstep) baseline -------------------------------------------------------------------------
    async def _collect_lockstep(self) -> list[Group]:
        groups = [self._new_group() for _ in range(self.cfg.groups_per_step)]
        while True:
            live = [g for g in groups if not g.dropped]
            pending = [(g, s) for g in live for s in range(g.size) if s not in g.results]
            missing = self.cfg.groups_per_step - len(live)
            for _ in range(missing):
                group = self._new_group()
                groups.append(group)
                pending += [(group, s) for s in range(group.size)]
            if not pending:
                break
            await self._lockstep_round(pending)
            if self.failure is not None:
                raise self.failure
        self.active.clear()
        self.ready.clear()
        return [g for g in groups if not g.dropped][: self.cfg.groups_per_step]

    async def _lockstep_round(self, pending: list[tuple[Group, int]]) -> None:
        shares: list[list[tuple[Group, int]]] = [[] for _ in self.workers]
        for i, item in enumerate(pending):
            shares[i % len(self.workers)].append(item)

        async def run(index: int, share: list[tuple[Group, int]]) -> None:
            specs = [self._spec(g, s) for g, s in share]
            limit = max(self._limit(g.task) for g, _ in share)
            handle = self.workers[index]
            try:
                results = [EpisodeResult.from_dict(d) for d in
                           await asyncio.wait_for(handle.run_lockstep.remote(specs), limit)]
            except Exception as exc:  # noqa: BLE001 - timeout or a dead worker: the whole share failed
                status = "hung" if isinstance(exc, asyncio.TimeoutError) else "sandbox_error"
                results = [self._failed(spec, status, f"env worker {index}: {type(exc).__name__}: {exc}")
                           for spec in specs]
                await self._check_worker(index, handle)
            for (group, sample), result in zip(share, results):
                self._on_result(group, sample, result)

        await asyncio.gather(*(run(i, share) for i, share in enumerate(shares) if share))
