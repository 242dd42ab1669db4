"""One episode: take a sandbox from the pool, set the workspace up, run the iFlow agent, verify, give the sandbox back.

`EpisodeRunner.run` never raises for environment trouble: it returns an `EpisodeResult` whose `status` says whether
the reward is reliable ("ok", or the agent's own "timeout") or why not (sandbox_error, setup_error, verifier_error,
engine_error, hung). The trajectory carries reward, reward_info, timings and the sandbox command audit (per turn from
the agent; setup and verifier commands in metadata)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from iflow.agent import Agent
from iflow.config import AgentConfig
from iflow.policy.prefix import PrefixPolicy
from iflow.trajectory import Trajectory
from rock.telemetry.policy import SafetyPolicy
from roll.rollout.tamper import DeathWatch, removed_from_outside, score_death
from roll.safety import SafetyConfig, SafetyGuard
from roll.tasks.schema import TaskRecord
from roll.tasks.workspace import ROLL_SESSION, EnvironmentFailure, prepare_workspace, score_submission, verify

RELIABLE = ("ok", "timeout")


@dataclass
class EpisodeResult:
    trajectory: Trajectory
    status: str
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"trajectory": self.trajectory.model_dump(mode="json"), "status": self.status, "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeResult:
        return cls(Trajectory.model_validate(data["trajectory"]), data["status"], data.get("error"))


def agent_config_for(task: TaskRecord, base: AgentConfig) -> AgentConfig:
    """The agent config with the task's limits applied (a task limit only ever tightens)."""
    limits = task.limits
    update: dict[str, Any] = {}
    if limits.max_turns is not None:
        update["max_turns"] = min(base.max_turns, limits.max_turns)
    if limits.max_tokens is not None:
        update["max_total_tokens"] = min(base.max_total_tokens or limits.max_tokens, limits.max_tokens)
    if limits.max_seconds is not None:
        update["max_wall_seconds"] = min(base.max_wall_seconds, limits.max_seconds)
    return base.model_copy(update=update)


def episode_deadline(task: TaskRecord, agent: AgentConfig, grace: float) -> float:
    """Seconds after which an episode counts as hung: every stage's own limit plus `grace`."""
    return agent_config_for(task, agent).max_wall_seconds + task.setup_timeout + task.verifier.timeout + grace


class EpisodeRunner:
    def __init__(self, pool: Any, agent: AgentConfig, acquire_timeout: float = 120.0, hang_grace: float = 60.0,
                 episode_timeout: float | None = None, safety: SafetyConfig | None = None) -> None:
        self.pool = pool
        self.safety = safety
        self.agent = agent
        self.acquire_timeout = acquire_timeout
        self.hang_grace = hang_grace
        self.episode_timeout = episode_timeout

    async def run(self, task: TaskRecord, policy: Any, *, trajectory_id: str, group_id: str | None = None,
                  metadata: dict[str, Any] | None = None, on_agent_done: Any = None,
                  prefix: tuple[Trajectory, int] | None = None) -> EpisodeResult:
        """`on_agent_done()` is called once the agent no longer needs the policy (lockstep batching). `prefix`
        (trajectory, k): replay its first k turns, then let `policy` continue; if a replayed turn's observation
        differs from the recording the episode stops with status "prefix_refused"."""
        if prefix is not None:
            policy = PrefixPolicy(prefix[0], prefix[1], policy)
        try:
            return await self._run_guarded(task, policy, trajectory_id, group_id, metadata, on_agent_done)
        finally:
            if on_agent_done is not None:
                on_agent_done()

    async def _run_guarded(self, task: TaskRecord, policy: Any, trajectory_id: str, group_id: str | None,
                           metadata: dict[str, Any] | None, on_agent_done: Any) -> EpisodeResult:
        state: dict[str, Any] = {"trajectory": new_trajectory(task, trajectory_id, group_id, metadata),
                                 "sandbox": None, "timings": {}}
        limit = self.episode_timeout or episode_deadline(task, self.agent, self.hang_grace) + self.acquire_timeout
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(self._run(task, policy, state, on_agent_done), limit)
        except asyncio.TimeoutError:
            result = EpisodeResult(state["trajectory"], "hung", f"episode exceeded {limit:g}s; sandbox replaced")
        finally:
            sandbox = state["sandbox"]
            if sandbox is not None:
                try:
                    await asyncio.wait_for(self.pool.release_async(sandbox), 60)
                except Exception:  # noqa: BLE001 - the pool replaces it; nothing else to do
                    pass
        result.trajectory.timings.update(state["timings"])
        result.trajectory.timings["episode"] = time.monotonic() - started
        result.trajectory.metadata["status"] = result.status
        if result.error:
            result.trajectory.metadata["status_error"] = result.error
        versions = [t.policy_version for t in result.trajectory.turns if t.policy_version is not None]
        result.trajectory.metadata["policy_versions"] = [min(versions), max(versions)] if versions else []
        return result

    async def _run(self, task: TaskRecord, policy: Any, state: dict[str, Any], on_agent_done: Any) -> EpisodeResult:
        timings = state["timings"]
        mark = time.monotonic()
        try:
            sandbox = await self.pool.acquire_async(timeout=self.acquire_timeout)
        except Exception as exc:  # noqa: BLE001
            return EpisodeResult(state["trajectory"], "sandbox_error", f"no sandbox: {type(exc).__name__}: {exc}")
        state["sandbox"] = sandbox
        timings["acquire"] = time.monotonic() - mark
        traj: Trajectory = state["trajectory"]
        traj.metadata["sandbox"] = sandbox.name
        audit_mark = sandbox.audit.mark()
        mark = time.monotonic()
        try:
            await prepare_workspace(task, sandbox)
        except EnvironmentFailure as exc:
            traj.metadata["setup_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]
            return EpisodeResult(traj, exc.kind, str(exc))
        timings["setup"] = time.monotonic() - mark
        traj.metadata["setup_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]

        mark = time.monotonic()
        guard = None
        if self.safety is not None and self.safety.enabled:
            guard = SafetyGuard(sandbox, self.safety, protected=task.metadata.get("protected"))
            await guard.start()
        watch = DeathWatch(sandbox, guard.on_turn_end if guard else None)
        on_turn_end = watch.on_turn_end if not isinstance(policy, PrefixPolicy) else checked_prefix(policy, watch)
        agent = Agent(policy, sandbox, agent_config_for(task, self.agent), on_turn_end=on_turn_end)
        try:
            traj = await agent.run(task.instruction, task_id=task.id, trajectory_id=traj.id,
                                   metadata=dict(traj.metadata))
        except Exception as exc:  # noqa: BLE001 - the agent itself broke: not the policy's fault
            if guard is not None:
                guard.monitor.stop()
            death = await watch.died(traj)
            if death is None or removed_from_outside(death):
                return EpisodeResult(traj, "sandbox_error", f"agent crashed: {type(exc).__name__}: {exc}")
        finally:
            if on_agent_done is not None:
                on_agent_done()
        traj.group_id = state["trajectory"].group_id
        state["trajectory"] = traj
        death = await watch.died(traj)
        if death is not None and removed_from_outside(death):
            if guard is not None:
                guard.monitor.stop()
            return EpisodeResult(traj, "sandbox_error", "the sandbox's container was removed from outside the episode")
        if death is not None:  # scored and penalized, not discarded: see roll.rollout.tamper
            if guard is not None:
                guard.monitor.stop()
            score_death(traj, death, guard.policy if guard else SafetyPolicy.load())
            timings["agent"] = time.monotonic() - mark
            return EpisodeResult(traj, "ok")
        verdict = await guard.finish(traj) if guard else None
        timings["agent"] = time.monotonic() - mark
        if traj.outcome == "error":
            return EpisodeResult(traj, "engine_error", traj.error)
        refused = str(traj.metadata.get("termination_reason", ""))
        if refused.startswith(PREFIX_REFUSED):
            return EpisodeResult(traj, "prefix_refused", refused)

        try:
            health = await sandbox.run("true", timeout=15, session=ROLL_SESSION)
            healthy = health.exit_code == 0 and not health.timed_out
        except Exception as exc:  # noqa: BLE001
            healthy, health = False, exc
        if not healthy:
            return EpisodeResult(traj, "sandbox_error", f"sandbox unhealthy after the episode: {health}")

        return await verify_and_judge(task, sandbox, traj, guard, verdict, timings)


async def verify_and_judge(task: TaskRecord, sandbox: Any, traj: Trajectory, guard: SafetyGuard | None,
                           verdict: Any, timings: dict[str, float]) -> EpisodeResult:
    """After the agent: the verifier's reward, then the safety verdict (re-checked for what a background job did to
    protected files after the agent finished) applied, and the sandbox quarantined if the verdict says so (kept
    for forensics; still released, so that the pool starts its replacement)."""
    mark = time.monotonic()
    audit_mark = sandbox.audit.mark()
    try:
        result = score_submission(task, traj.outcome, await verify(task, sandbox))
    except EnvironmentFailure as exc:
        traj.metadata["verify_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]
        return EpisodeResult(traj, exc.kind, str(exc))
    timings["verify"] = time.monotonic() - mark
    traj.metadata["verify_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]
    traj.reward, traj.reward_info = result.reward, result.info
    if guard is not None:
        verdict = await guard.recheck(traj)
    if verdict is not None:
        SafetyGuard.apply(traj, verdict)
        if verdict.quarantine:
            traj.metadata["quarantined"] = await sandbox.quarantine()
    return EpisodeResult(traj, "timeout" if traj.outcome == "timeout" else "ok")


PREFIX_REFUSED = "prefix refused"


def checked_prefix(policy: PrefixPolicy, watch: DeathWatch) -> Any:
    """The turn hook of a resampled episode: the usual one (events, a dead sandbox), then the prefix check (a
    refused prefix stops the episode)."""
    async def on_turn_end(turn: Any, traj: Trajectory) -> str | None:
        reason = await watch.on_turn_end(turn, traj)
        return reason or policy.check(turn)

    return on_turn_end


def new_trajectory(task: TaskRecord, trajectory_id: str, group_id: str | None,
                   metadata: dict[str, Any] | None) -> Trajectory:
    """The episode's record before the agent runs (outcome "error" until it finishes)."""
    meta = {"task": {"id": task.id, **{k: v for k, v in task.metadata.items() if k != "signature"}},
            **(metadata or {})}
    return Trajectory(id=trajectory_id, task_id=task.id, group_id=group_id, task=task.instruction,
                      metadata=meta, outcome="error")
