"""`agent=blackbox` episodes (docs/proxy.md): take a sandbox from the pool, set the workspace up, run an agent
*command* inside it that talks to the model only through the proxy (its own session), wait for it under the episode's limits, verify, give
the sandbox back. The trajectory is built from the session's recorded calls (token-exact, forks marked); every call
is on the trajectory's audit record (`metadata["proxy"]`), the command on the sandbox's command audit. The same
SafetyGuard as the iFlow loop watches the sandbox; when its policy says stop, the session is closed (the agent gets
no more model calls; its command ends at the latest at the wall-clock limit)."""
from __future__ import annotations

import asyncio
import shlex
import time
from typing import Any

from iflow.config import AgentConfig
from iflow.trajectory import Trajectory
from roll.proxy.config import AGENT_CONFIG_IN_SANDBOX, BlackBoxAgentConfig
from roll.proxy.sandbox_link import agent_env, install_shim, new_socket_path, proxy_volumes, with_shim
from roll.proxy.server import ProxyServer
from roll.proxy.service import CONTEXT_FULL
from roll.proxy.trajectory import build_trajectory, served_tool_call
from roll.rollout.episode import EpisodeResult, agent_config_for, episode_deadline, new_trajectory, verify_and_judge
from roll.safety import SafetyConfig, SafetyGuard
from roll.tasks.schema import TaskRecord
from roll.tasks.workspace import EnvironmentFailure, prepare_workspace

AGENT_SESSION = "roll-blackbox"
KILLED = (124, 137)  # `timeout` ended the command


def start_worker_proxy(sandbox: Any, tokenizer: Any, agent: BlackBoxAgentConfig) -> tuple[ProxyServer, Any]:
    """An env worker's proxy (one per worker, every episode a session on it) and the sandbox config whose
    sandboxes mount its socket."""
    server = ProxyServer(None, agent.proxy_config(), uds=new_socket_path(), tokenizer=tokenizer).start()
    update: dict[str, Any] = {"volumes": {**sandbox.volumes, **proxy_volumes(server.uds)}}
    if agent.image:
        update["image"] = agent.image
    return server, sandbox.model_copy(update=update)


def iflow_config_json(config: AgentConfig) -> str:
    """The AgentConfig part of an episode's (black-box) agent config, as `iflow --agent-config` reads it."""
    return AgentConfig.model_validate(config.model_dump(include=set(AgentConfig.model_fields))).model_dump_json()


def agent_command(config: BlackBoxAgentConfig, task: TaskRecord) -> str:
    return config.command.format(task=shlex.quote(task.instruction), agent_config=AGENT_CONFIG_IN_SANDBOX,
                                 max_turns=config.max_turns, max_tokens=config.sampling.max_tokens,
                                 command_timeout=f"{config.command_timeout:g}")


class BlackBoxEpisodeRunner:
    """Same contract as `roll.rollout.episode.EpisodeRunner.run` (an EpisodeResult, never raises for environment
    trouble), with a proxy server whose socket the pool's sandboxes mount (`sandbox_link.proxy_volumes`)."""

    def __init__(self, pool: Any, agent: BlackBoxAgentConfig, proxy: ProxyServer, acquire_timeout: float = 120.0,
                 hang_grace: float = 60.0, episode_timeout: float | None = None,
                 safety: SafetyConfig | None = None, safety_poll_seconds: float = 1.0) -> None:
        self.pool, self.agent, self.proxy = pool, agent, proxy
        self.acquire_timeout, self.hang_grace, self.episode_timeout = acquire_timeout, hang_grace, episode_timeout
        self.safety, self.safety_poll_seconds = safety, safety_poll_seconds

    async def run(self, task: TaskRecord, policy: Any, *, trajectory_id: str, group_id: str | None = None,
                  metadata: dict[str, Any] | None = None, on_agent_done: Any = None) -> EpisodeResult:
        state: dict[str, Any] = {"trajectory": new_trajectory(task, trajectory_id, group_id, metadata),
                                 "sandbox": None, "session": None, "timings": {}}
        limit = self.episode_timeout or episode_deadline(task, self.agent, self.hang_grace) + self.acquire_timeout
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(self._run(task, policy, state, on_agent_done), limit)
        except asyncio.TimeoutError:
            result = EpisodeResult(state["trajectory"], "hung", f"episode exceeded {limit:g}s; sandbox replaced")
        finally:
            if state["session"] is not None:
                self.proxy.sessions.close(state["session"].token)
            if on_agent_done is not None:
                on_agent_done()
            if state["sandbox"] is not None:
                try:
                    await asyncio.wait_for(self.pool.release_async(state["sandbox"]), 60)
                except Exception:  # noqa: BLE001 - the pool replaces it
                    pass
        traj = result.trajectory
        traj.group_id = group_id
        traj.timings.update(state["timings"])
        traj.timings["episode"] = time.monotonic() - started
        traj.metadata["status"] = result.status
        if result.error:
            traj.metadata["status_error"] = result.error
        versions = [t.policy_version for t in traj.turns if t.policy_version is not None]
        traj.metadata["policy_versions"] = [min(versions), max(versions)] if versions else []
        return result

    async def _run(self, task: TaskRecord, policy: Any, state: dict[str, Any], on_agent_done: Any) -> EpisodeResult:
        timings, traj = state["timings"], state["trajectory"]
        mark = time.monotonic()
        try:
            sandbox = await self.pool.acquire_async(timeout=self.acquire_timeout)
        except Exception as exc:  # noqa: BLE001
            return EpisodeResult(traj, "sandbox_error", f"no sandbox: {type(exc).__name__}: {exc}")
        state["sandbox"] = sandbox
        timings["acquire"] = time.monotonic() - mark
        traj.metadata["sandbox"] = sandbox.name
        audit_mark = sandbox.audit.mark()
        mark = time.monotonic()
        try:
            await prepare_workspace(task, sandbox)
            await install_shim(sandbox)
            await sandbox.write_file(AGENT_CONFIG_IN_SANDBOX, iflow_config_json(agent_config_for(task, self.agent)))
        except EnvironmentFailure as exc:
            traj.metadata["setup_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]
            return EpisodeResult(traj, exc.kind, str(exc))
        except RuntimeError as exc:  # the proxy is not reachable from this sandbox: fail closed
            return EpisodeResult(traj, "setup_error", str(exc))
        timings["setup"] = time.monotonic() - mark
        traj.metadata["setup_commands"] = [r.model_dump() for r in sandbox.audit.since(audit_mark)]

        config = agent_config_for(task, self.agent)
        session = self.proxy.sessions.open(traj.id, policy=policy, max_calls=config.max_turns,
                                           max_completion_tokens=config.max_total_tokens)
        state["session"] = session
        guard = None
        if self.safety is not None and self.safety.enabled:
            guard = SafetyGuard(sandbox, self.safety, protected=task.metadata.get("protected"))
            await guard.start()
        mark = time.monotonic()
        try:
            run = await self._run_agent(task, sandbox, session, config, guard, traj)
        except Exception as exc:  # noqa: BLE001 - the sandbox broke under the agent: not the policy's fault
            if guard is not None:
                guard.monitor.stop()
            return EpisodeResult(traj, "sandbox_error", f"agent command failed: {type(exc).__name__}: {exc}")
        finally:
            self.proxy.sessions.close(session.token)
            if on_agent_done is not None:
                on_agent_done()
        timings["agent"] = time.monotonic() - mark
        built = build_trajectory(session.calls, trajectory_id=traj.id, task_id=task.id, task=task.instruction,
                                 metadata=dict(traj.metadata))
        built.group_id, built.events = traj.group_id, traj.events
        traj = state["trajectory"] = built
        traj.metadata["agent_command"] = run
        traj.outcome, traj.error = self._outcome(run, session, config)
        verdict = await guard.finish(traj) if guard else None
        if any(c.status in ("error", "timeout") for c in session.calls):
            return EpisodeResult(traj, "engine_error", "a model call failed: " + next(
                c.error or c.status for c in session.calls if c.status in ("error", "timeout")))

        return await verify_and_judge(task, sandbox, traj, guard, verdict, timings)

    async def _run_agent(self, task: TaskRecord, sandbox: Any, session: Any, config: AgentConfig,
                         guard: SafetyGuard | None, traj: Trajectory) -> dict[str, Any]:
        env = agent_env(session.token, self.agent.shim_port, self.proxy.config.model_name)
        seconds = config.max_wall_seconds
        agent = ("env " + " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
                 + f" timeout -k 5 {seconds:g} {agent_command(self.agent, task)}")
        command = f"cd {shlex.quote(sandbox.config.workdir)} && {with_shim(agent, self.agent.shim_port)}"
        running = asyncio.ensure_future(sandbox.run(command, timeout=seconds + 15, session=AGENT_SESSION))
        stopped: str | None = None
        while guard is not None and not running.done():
            await asyncio.wait({running}, timeout=self.safety_poll_seconds)
            if running.done():
                break
            found = [e.model_dump() for e in await asyncio.to_thread(guard.monitor.poll, True)]
            traj.events.extend(found)  # episode-level: the calls become turns only afterwards
            guard.events.extend(found)
            guard.check_tracer(traj, None)  # a dead tracer: the episode is blind from here (telemetry.blind)
            verdict = guard.policy.verdict(traj.events)
            if verdict.terminate and stopped is None:
                stopped = "safety: " + ", ".join(sorted(set(verdict.reasons)))
                self.proxy.sessions.close(session.token)  # fail closed: no more model calls for this agent
        result = await running
        return {"exit_code": result.exit_code, "timed_out": result.timed_out or result.exit_code in KILLED,
                "duration": result.duration, "output_tail": result.output[-2000:], "stopped": stopped}

    @staticmethod
    def _outcome(run: dict[str, Any], session: Any, config: AgentConfig) -> tuple[str, str | None]:
        """The episode's outcome from what the proxy saw (the agent's exit status says little: `iflow -p` exits 0
        at its turn limit too): its last served call submitted, a limit was hit, or the agent ended by itself."""
        if run["stopped"]:
            return "terminated", run["stopped"]
        if run["timed_out"]:
            return "timeout", f"the agent command ran past {config.max_wall_seconds:g}s"
        last = max(session.calls, key=lambda c: c.seq) if session.calls else None
        served = [c for c in session.calls if c.status == "ok"]
        if served:
            call, _ = served_tool_call(max(served, key=lambda c: c.seq))
            if call is not None and call.name == "submit" and last is not None and last.status == "ok":
                return "submitted", None
        if last is not None and last.status == "rejected" and last.error_code == CONTEXT_FULL:
            return "max_tokens", last.error  # the context is full (as iflow's ContextOverflow)
        if session.started >= config.max_turns:
            return "max_turns", None
        if session.tokens_left() == 0:
            return "max_tokens", None
        if run["exit_code"] == 0:
            return "submitted", None  # an agent without a submit tool: ending by itself is its submission
        return "exited", f"the agent command exited with status {run['exit_code']}"
