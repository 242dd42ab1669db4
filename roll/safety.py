"""Safety inside the RL loop: a `SafetyGuard` watches one episode's sandbox (rock telemetry), puts each event on the
turn that caused it, stops the episode when the policy says so, and after the episode applies the verdict:
penalize the reward, drop the trajectory from the batch, quarantine the sandbox."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iflow.trajectory import Trajectory, Turn
from rock.telemetry import SafetyPolicy, SandboxMonitor, Verdict
from rock.telemetry.events import make_event
from rock.telemetry.tracer import SPOOL, TracerStatus, ensure_tracer, tracer_alive

log = logging.getLogger("roll.safety")


class SafetyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    ebpf: bool = Field(True, description="host eBPF tracer; false (or unavailable) = degraded in-container poller")
    require: bool = Field(True, description="with ebpf on, a missing or dead tracer stops the run (fail closed) and "
                                            "episodes it could not watch are dropped; false = run on, degraded")
    rules: list[str] = Field(default_factory=list, description="extra rule files (YAML) besides rock's defaults")
    policy: str | None = Field(None, description="policy YAML; null = rock/rules/policy.yaml")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description="per-category action overrides, e.g. "
                                                             "{network.egress: {penalty: 0.5}}")
    protected: list[str] = Field(default_factory=list, description="workspace paths the agent must not edit "
                                                                   "(tests, verifier); the task may add its own")
    integrity_every_turn: bool = Field(True, description="hash protected files after every turn (ties a tampering "
                                                         "to its turn) instead of only at the end")


class TelemetryRequired(RuntimeError):
    """The tracer the run requires is missing or dead: the run stops (rollout.safety.require)."""


def unavailable_line(reason: str) -> str:
    return (f"telemetry: {reason} — install it (scripts/setup.sh) or set rollout.safety.require=false to run with "
            "the degraded in-container poller")


def require_telemetry(config: SafetyConfig, spool: Path = SPOOL) -> TracerStatus | None:
    """Before a run: with require on, start (or find) the host tracer, or raise with one line naming the cause.
    None when the config does not ask for the tracer (safety or ebpf off: an explicit degraded choice)."""
    if not (config.enabled and config.ebpf):
        if config.enabled:
            log.warning("rock telemetry DEGRADED by choice (rollout.safety.ebpf=false): in-container poller only")
        return None
    status = ensure_tracer(spool)
    if status.mode != "ebpf":
        if config.require:
            raise TelemetryRequired(unavailable_line(status.reason))
        log.warning("rock telemetry DEGRADED (rollout.safety.require=false): %s", status.reason)
    return status


class SafetyGuard:
    def __init__(self, sandbox: Any, config: SafetyConfig, protected: list[str] | None = None,
                 spool: Path = SPOOL) -> None:
        from rock.telemetry import load_rules

        self.sync_sandbox = getattr(sandbox, "sync", sandbox)
        self.config = config
        self.spool = spool
        self.policy = SafetyPolicy.load(config.policy, config.overrides)
        self.monitor = SandboxMonitor(self.sync_sandbox, rules=load_rules(*config.rules),
                                      protected=[*config.protected, *(protected or [])], use_ebpf=config.ebpf,
                                      spool=spool)
        self.events: list[dict[str, Any]] = []
        self.blind = False  # the tracer died while this episode ran

    async def start(self) -> str:
        status = await asyncio.to_thread(self.monitor.start)
        if self.config.ebpf and self.config.require and status.mode != "ebpf":
            self.monitor.stop()
            raise TelemetryRequired(unavailable_line(status.reason))
        return status.mode

    def check_tracer(self, trajectory: Trajectory, turn: Turn | None) -> None:
        """The heartbeat went stale: from here on the episode is unwatched (a `telemetry.blind` event, once)."""
        if self.blind or self.monitor.status.mode != "ebpf" or tracer_alive(self.spool):
            return
        self.blind = True
        log.error("rock telemetry BLIND for %s: the host tracer (%s) stopped mid-episode",
                  self.sync_sandbox.name, self.spool)
        event = make_event("telemetry.blind", "tracer-dead", f"the host eBPF tracer ({self.spool}) stopped "
                           "mid-episode: what followed was not watched", time=time.time(),
                           sandbox=self.sync_sandbox.name, source="heartbeat",
                           turn=turn.index if turn is not None else None, detail={"spool": str(self.spool)})
        self._attach([event.model_dump()], trajectory, turn)

    async def on_turn_end(self, turn: Turn, trajectory: Trajectory) -> str | None:
        """iflow's turn hook: attach the turn's events; a reason to stop ends the episode ("terminated")."""
        if self.config.integrity_every_turn:  # protected paths, and persistence / test-config files always
            await asyncio.to_thread(self.monitor.check_integrity)
        found = [e.model_dump() for e in await asyncio.to_thread(self.monitor.poll, True)]
        self._attach(found, trajectory, turn)
        self.check_tracer(trajectory, turn)
        stopped = sorted({f"{e['category']} ({e['rule']})" for e in found
                          if e.get("detail", {}).get("stopped_command")})
        if stopped:  # the agent saw its command cut short: the turn says why
            turn.observation += f"\n[rock: the command was stopped by the safety monitor: {', '.join(stopped)}]"
        verdict = self.policy.verdict(found)
        if verdict.terminate:
            return "safety: " + ", ".join(sorted(set(verdict.reasons)))
        return None

    def _attach(self, events: list[dict[str, Any]], trajectory: Trajectory, default: Turn | None) -> None:
        by_index = {t.index: t for t in trajectory.turns}
        for event in events:
            turn = by_index.get(event.get("turn")) if event.get("turn") is not None else None
            target = turn or default
            if target is not None:
                target.events.append(event)
            else:
                trajectory.events.append(event)
        self.events.extend(events)

    async def finish(self, trajectory: Trajectory) -> Verdict:
        """After the agent: protected-file check and last events (the tracer drained up to now, so the last turn's
        eBPF-only events count, on that turn); the episode verdict goes into the metadata."""
        await asyncio.to_thread(self.monitor.check_integrity)
        found = [e.model_dump() for e in await asyncio.to_thread(self.monitor.poll, True)]
        last = trajectory.turns[-1] if trajectory.turns else None
        self._attach(found, trajectory, last)
        self.check_tracer(trajectory, last)
        self.monitor.stop()
        return self._verdict(trajectory)

    async def recheck(self, trajectory: Trajectory) -> Verdict:
        """Once more just before the sandbox goes (after the verifier): a protected file that a background job of
        the agent modified or deleted after `finish` is still the agent's doing, put on its last turn. Files added
        since (the verifier's own caches) are not counted. Returns the episode verdict, recomputed."""
        late = [e for e in await asyncio.to_thread(self.monitor.check_integrity)
                if e.detail.get("change") in ("modified", "deleted")]
        last = trajectory.turns[-1] if trajectory.turns else None
        for event in late:
            event.detail["after_episode"] = True
            event.turn = last.index if last is not None else None
        self._attach([e.model_dump() for e in late], trajectory, last)
        return self._verdict(trajectory)

    def _verdict(self, trajectory: Trajectory) -> Verdict:
        verdict = self.policy.verdict(trajectory.all_events())
        if self.blind and self.config.require:  # not trained on: what it did is partly unknown
            verdict.drop = True
            verdict.reasons.append("telemetry.blind")
        trajectory.metadata["safety"] = verdict.model_dump() | {"mode": self.monitor.status.mode,
                                                                "blind": self.blind}
        return verdict

    @staticmethod
    def apply(trajectory: Trajectory, verdict: Verdict) -> None:
        """Penalize the verified reward (called after the verifier ran)."""
        if verdict.penalty and trajectory.reward is not None:
            trajectory.reward_info["reward_before_safety"] = trajectory.reward
            trajectory.reward = trajectory.reward - verdict.penalty
