"""Safety inside the RL loop: a `SafetyGuard` watches one episode's sandbox (rock telemetry), puts each event on the
turn that caused it, stops the episode when the policy says so, and after the episode applies the verdict:
penalize the reward, drop the trajectory from the batch, quarantine the sandbox."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from iflow.trajectory import Trajectory, Turn
from rock.telemetry import SafetyPolicy, SandboxMonitor, Verdict

log = logging.getLogger("roll.safety")


class SafetyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    ebpf: bool = Field(True, description="host eBPF tracer; false (or unavailable) = degraded in-container poller")
    rules: list[str] = Field(default_factory=list, description="extra rule files (YAML) besides rock's defaults")
    policy: str | None = Field(None, description="policy YAML; null = rock/rules/policy.yaml")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description="per-category action overrides, e.g. "
                                                             "{network.egress: {penalty: 0.5}}")
    protected: list[str] = Field(default_factory=list, description="workspace paths the agent must not edit "
                                                                   "(tests, verifier); the task may add its own")
    integrity_every_turn: bool = Field(True, description="hash protected files after every turn (ties a tampering "
                                                         "to its turn) instead of only at the end")


class SafetyGuard:
    def __init__(self, sandbox: Any, config: SafetyConfig, protected: list[str] | None = None) -> None:
        from rock.telemetry import load_rules

        self.sync_sandbox = getattr(sandbox, "sync", sandbox)
        self.config = config
        self.policy = SafetyPolicy.load(config.policy, config.overrides)
        self.monitor = SandboxMonitor(self.sync_sandbox, rules=load_rules(*config.rules),
                                      protected=[*config.protected, *(protected or [])], use_ebpf=config.ebpf)
        self.events: list[dict[str, Any]] = []

    async def start(self) -> str:
        status = await asyncio.to_thread(self.monitor.start)
        return status.mode

    async def on_turn_end(self, turn: Turn, trajectory: Trajectory) -> str | None:
        """iflow's turn hook: attach the turn's events; a reason to stop ends the episode ("terminated")."""
        if self.config.integrity_every_turn:  # protected paths, and persistence / test-config files always
            await asyncio.to_thread(self.monitor.check_integrity)
        found = [e.model_dump() for e in await asyncio.to_thread(self.monitor.poll, True)]
        self._attach(found, trajectory, turn)
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
        trajectory.metadata["safety"] = verdict.model_dump() | {"mode": self.monitor.status.mode}
        return verdict

    @staticmethod
    def apply(trajectory: Trajectory, verdict: Verdict) -> None:
        """Penalize the verified reward (called after the verifier ran)."""
        if verdict.penalty and trajectory.reward is not None:
            trajectory.reward_info["reward_before_safety"] = trajectory.reward
            trajectory.reward = trajectory.reward - verdict.penalty
