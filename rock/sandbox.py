"""`Sandbox`: one hardened Docker container with persistent shell sessions, file transfer, limits and an audit log."""
from __future__ import annotations

import posixpath
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import docker

from rock.cgroups import CgroupStats, cgroup_procs, read_stats
from rock.config import KEEPALIVE_UID, SandboxConfig
from rock.confinement import ConfinementError, check_confinement
from rock.egress import SHIM, SHIM_PORT, SOCKET_DIR_IN_SANDBOX, EgressProxy
from rock.engine import client as docker_client
from rock.reaper import QUARANTINE_PREFIX, owner_labels, reap_once_per_process
from rock.killer import start_exec
from rock.oneshot import run_exec
from rock.records import AuditLog, CommandRecord, CommandResult, SandboxDeath
from rock.session import SessionDied, ShellSession
from rock.transfer import extract_to, path_tar, read_single_member, single_file_tar


# The keep-alive (the container's init and its `sleep infinity`) runs under a uid of its own, that no agent runs
# as: with every capability dropped, neither the agent's uid nor a root agent may signal it (kill(2) needs the same
# uid or CAP_KILL), and an init is immune to SIGKILL from inside its pid namespace anyway.
KEEPALIVE_USER = f"{KEEPALIVE_UID}:{KEEPALIVE_UID}"
EXEC_OUTPUT_LIMIT = 4 * 1024 * 1024  # one-off tooling execs: bounded memory, generous for listings


def security_options(config: SandboxConfig) -> list[str]:
    options = ["no-new-privileges"]
    if config.seccomp_profile:
        options.append(f"seccomp={Path(config.seccomp_profile).read_text()}")
    return options


class SandboxError(RuntimeError):
    pass


class SandboxDied(SandboxError):
    """The sandbox's container stopped during use; `death` says how."""

    def __init__(self, death: SandboxDeath) -> None:
        super().__init__(f"sandbox container is {death.status} (exit code {death.exit_code}"
                         f"{', OOM-killed' if death.oom_killed else ''}){': ' + death.error if death.error else ''}")
        self.death = death


class Sandbox:
    """A Docker container locked down by default (no network, no capabilities, no-new-privileges, non-root,
    pids/memory/cpu limits). Use as a context manager, or call start() / stop()."""

    def __init__(self, config: SandboxConfig | None = None, **overrides: Any) -> None:
        base = config or SandboxConfig()
        self.config = base.model_copy(update=overrides) if overrides else base
        if overrides:
            self.config = SandboxConfig.model_validate(self.config.model_dump())
        self.name = f"rock-{secrets.token_hex(6)}"
        self.audit = AuditLog()
        self.container = None
        self._sessions: dict[str, ShellSession] = {}
        self._session_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._uid_gid: tuple[int, int] | None = None
        self.listeners: list[Any] = []  # objects with after_command(record) (telemetry monitors)
        self.running_commands = 0
        self.egress: EgressProxy | None = None
        self.died: SandboxDeath | None = None  # set once the container is found stopped while in use

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.container.id if self.container is not None else ""

    def start(self) -> "Sandbox":
        reap_once_per_process()
        cfg = self.config
        client = docker_client()
        env, volumes = dict(cfg.env), dict(cfg.volumes)
        try:
            if cfg.egress_allow:
                self.egress = EgressProxy(self.name, cfg.egress_allow)
                self.egress.start()
                volumes[str(self.egress.directory)] = {"bind": SOCKET_DIR_IN_SANDBOX, "mode": "ro"}
                proxy = f"http://127.0.0.1:{SHIM_PORT}"
                env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, http_proxy=proxy, https_proxy=proxy)
            self.container = client.containers.create(
                cfg.image, ["sleep", "infinity"], entrypoint=[], name=self.name, hostname=self.name, detach=True,
                init=True, stdin_open=False, tty=False, user=KEEPALIVE_USER, working_dir=cfg.workdir, environment=env,
                labels={**cfg.labels, **owner_labels()}, network_mode=cfg.network_mode,
                cap_drop=["ALL"], cap_add=cfg.cap_add or None, security_opt=security_options(cfg),
                privileged=False, pids_limit=cfg.pids_limit, mem_limit=cfg.memory, memswap_limit=cfg.memory,
                nano_cpus=int(cfg.cpus * 1e9), read_only=cfg.read_only_rootfs, tmpfs=cfg.tmpfs or None,
                volumes=volumes or None, ipc_mode="private",
            )
            self.container.start()
        except docker.errors.ImageNotFound:
            self.stop()  # nothing of a failed start outlives it: the container, the egress proxy
            raise SandboxError(f"sandbox image {cfg.image!r} not found: build it with `rock image build`") from None
        except docker.errors.APIError as exc:
            self.stop()
            raise SandboxError(f"could not start sandbox from {cfg.image!r}: {exc.explanation or exc}") from None
        except BaseException:
            self.stop()
            raise
        try:
            if self.egress is not None:
                self._start_egress_shim()
            self.session("default")
            check_confinement(self)
        except ConfinementError as exc:
            self.stop()
            raise SandboxError(f"refusing sandbox from {cfg.image!r}: {exc}") from None
        except Exception:
            self.stop()
            raise
        return self

    def _start_egress_shim(self) -> None:
        self.egress.grant(*self._owner())  # the proxy socket is the sandbox user's alone
        api = docker_client().api
        start_exec(api, self.container.id,
                   api.exec_create(self.container.id, ["python3", "-c", SHIM], user=self.config.user)["Id"], detach=True)
        probe = f"import socket; socket.create_connection(('127.0.0.1', {SHIM_PORT}), 1).close()"
        for _ in range(50):
            if self.exec(["python3", "-c", probe])[0] == 0:
                return
            time.sleep(0.1)
        raise SandboxError("the egress shim did not come up (the image needs python3 for egress_allow)")

    def stop(self) -> None:
        for session in list(self._sessions.values()):
            session.close()
        self._sessions.clear()
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: a removal is already under way
                    raise
            self.container = None
        if self.egress is not None:
            self.egress.stop()
            self.egress = None

    def quarantine(self) -> str:
        """Stop the sandbox but keep the container for forensics; the reaper leaves `rock-quarantine-*` alone."""
        self._require_started()
        new_name = QUARANTINE_PREFIX + self.name.removeprefix("rock-")
        self.container.rename(new_name)
        self.container.stop(timeout=1)
        self.name = new_name
        self.container = None
        self._sessions.clear()
        if self.egress is not None:  # the container is kept, its way out is not
            self.egress.stop()
            self.egress = None
        return new_name

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _require_started(self) -> None:
        if self.container is None:
            raise SandboxError(f"sandbox {self.name} is not running: call start() or use it as a context manager")

    # ---- commands --------------------------------------------------------------------------------------------
    def session(self, name: str = "default") -> ShellSession:
        self._require_started()
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                session = ShellSession(docker_client().api, self.container.id, name, self.config.user,
                                       self.config.workdir, self.config.env, self.config.max_output_bytes)
                session.open(timeout=self.config.startup_timeout)
                self._sessions[name] = session
                self._session_locks[name] = threading.Lock()
            return session

    def _session_or_death(self, name: str) -> ShellSession:
        try:
            return self.session(name)
        except (SessionDied, docker.errors.APIError) as exc:
            self._raise_if_dead(exc)
            raise

    def _raise_if_dead(self, cause: Exception) -> None:
        death = self.check_alive(str(cause))
        if death is not None:
            raise SandboxDied(death) from cause

    def check_alive(self, error: str = "") -> SandboxDeath | None:
        """None while the container runs; else (and from then on) how it died. One Docker API call."""
        if self.died is not None or self.container is None:
            return self.died
        try:
            state = docker_client().api.inspect_container(self.container.id)["State"]
        except docker.errors.NotFound:
            state = {"Status": "removed"}
        if state.get("Running"):  # paused counts as running: the killer pauses it for a moment
            return None
        self.died = SandboxDeath(status=state.get("Status", "unknown"), exit_code=state.get("ExitCode"),
                                 oom_killed=bool(state.get("OOMKilled")), error=error)
        return self.died

    def close_session(self, name: str) -> None:
        with self._lock:
            session = self._sessions.pop(name, None)
        if session is not None:
            session.close()

    def run(self, command: str, timeout: float | None = None, session: str = "default",
            tags: dict[str, Any] | None = None) -> CommandResult:
        """Run `command` in the named persistent bash session (created on first use)."""
        shell = self._session_or_death(session)
        before = read_stats(self.container.id)
        started_at = time.time()
        with self._session_locks[session]:
            self.running_commands += 1
            try:
                raw = shell.run(command, timeout or self.config.command_timeout)
            except (SessionDied, docker.errors.APIError) as exc:
                self._raise_if_dead(exc)
                raise
            finally:
                self.running_commands -= 1
        after = read_stats(self.container.id)
        record = self.audit.append(CommandRecord(
            id=-1, sandbox=self.name, session=session, command=command, started_at=started_at,
            duration=raw.duration, exit_code=raw.exit_code, timed_out=raw.timed_out,
            output_bytes=len(raw.output.encode()) + raw.truncated_bytes, truncated_bytes=raw.truncated_bytes,
            oom_killed=after.oom_kills > before.oom_kills, pids_limit_hit=after.pids_limit_hits > before.pids_limit_hits,
            cmd_tag=raw.cmd_tag, tags=tags or {},
        ))
        for listener in self.listeners:
            listener.after_command(record)
        return CommandResult(
            output=raw.output, exit_code=raw.exit_code, timed_out=raw.timed_out, duration=raw.duration,
            truncated_bytes=raw.truncated_bytes, oom_killed=record.oom_killed, pids_limit_hit=record.pids_limit_hit,
            session_restarted=raw.session_restarted, record_id=record.id,
        )

    def exec(self, argv: list[str], user: str | None = None, timeout: float = 60.0,
             max_output_bytes: int = EXEC_OUTPUT_LIMIT) -> tuple[int, str]:
        """A one-off process outside any session (no shell state); for tooling, not for the agent. At `timeout`
        it is killed with everything it started and the status is 124; output beyond the cap is cut to head + tail."""
        self._require_started()
        result = run_exec(docker_client().api, self.container.id, argv, user or self.config.user,
                          self.config.workdir, timeout, max_output_bytes)
        return result.exit_code, result.output

    def host_pids(self) -> list[int] | None:
        """Host pids of the container's processes (None where this host cannot see its cgroup)."""
        self._require_started()
        return cgroup_procs(self.container.id)

    def session_shell_pids(self) -> set[int]:
        """Verified host pids of the live session shells (a shell whose pid could not be verified is left out)."""
        with self._lock:
            sessions = list(self._sessions.values())
        return {shell[0] for session in sessions if (shell := session.verified_shell()) is not None}

    def stats(self) -> CgroupStats:
        self._require_started()
        return read_stats(self.container.id)

    def processes(self) -> list[dict[str, str]]:
        """A census of the processes in the container (pid, ppid, user, command)."""
        code, out = self.exec(["ps", "-eo", "pid=,ppid=,user=,args="])
        rows = []
        for line in out.splitlines():
            parts = line.split(None, 3)
            if len(parts) >= 3:
                rows.append({"pid": parts[0], "ppid": parts[1], "user": parts[2],
                             "args": parts[3] if len(parts) > 3 else ""})
        return rows

    # ---- files -----------------------------------------------------------------------------------------------
    def _owner(self) -> tuple[int, int]:
        if self._uid_gid is None:
            code, out = self.exec(["sh", "-c", "id -u; id -g"])
            uid, gid = (int(x) for x in out.split()[:2])
            self._uid_gid = (uid, gid)
        return self._uid_gid

    def _abs(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(self.config.workdir, path)

    def _mkdir(self, directory: str) -> None:
        code, out = self.exec(["mkdir", "-p", directory])
        if code != 0:
            raise SandboxError(f"cannot create {directory} in sandbox: {out.strip()}")

    def read_file(self, path: str) -> bytes:
        self._require_started()
        path = self._abs(path)
        try:
            chunks, _ = self.container.get_archive(path)
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{path} does not exist in sandbox {self.name}") from None
        return read_single_member(chunks, path)

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        self._require_started()
        path = self._abs(path)
        payload = data.encode() if isinstance(data, str) else data
        parent = posixpath.dirname(path)
        self._mkdir(parent)
        uid, gid = self._owner()
        if not self.container.put_archive(parent, single_file_tar(posixpath.basename(path), payload, mode, uid, gid)):
            raise SandboxError(f"writing {path} into sandbox {self.name} failed")

    def upload(self, local: str | Path, remote: str) -> None:
        """Copy a local file or directory so that it lands exactly at `remote`."""
        self._require_started()
        local, remote = Path(local), self._abs(remote.rstrip("/") or "/")
        if not local.exists():
            raise FileNotFoundError(f"{local} does not exist")
        parent = posixpath.dirname(remote)
        self._mkdir(parent)
        uid, gid = self._owner()
        if not self.container.put_archive(parent, path_tar(local, posixpath.basename(remote), uid, gid)):
            raise SandboxError(f"uploading {local} to {remote} failed")

    def download(self, remote: str, local: str | Path) -> None:
        """Copy a file or directory out of the sandbox so that it lands exactly at `local`."""
        self._require_started()
        remote = self._abs(remote)
        try:
            chunks, _ = self.container.get_archive(remote)
        except docker.errors.NotFound:
            raise FileNotFoundError(f"{remote} does not exist in sandbox {self.name}") from None
        extract_to(chunks, remote, Path(local))
