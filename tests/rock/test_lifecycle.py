import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rock import AsyncSandbox, Sandbox, SandboxConfig, SandboxPool
from rock.sandbox import SandboxError
from rock.env import SandboxEnv
from rock.reaper import MANAGED, reap

pytestmark = pytest.mark.docker


def test_reaper_removes_sandboxes_of_a_sigkilled_owner(docker_engine, tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from rock import Sandbox
        sandboxes = [Sandbox().start() for _ in range(2)]
        print(" ".join(s.name for s in sandboxes), flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    names = owner.stdout.readline().split()
    assert len(names) == 2
    for name in names:
        assert docker_engine.containers.get(name).status == "running"
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    removed = reap()
    assert set(names) <= set(removed)
    alive = {c.name for c in docker_engine.containers.list(all=True, filters={"label": MANAGED})}
    assert not set(names) & alive


def test_reaper_leaves_live_owners_alone(sandbox):
    reap()
    assert sandbox.run("echo here").output == "here\n"


def test_pool_hands_out_started_sandboxes_fast_and_replaces_them(docker_engine):
    with SandboxPool(SandboxConfig(), size=2) as pool:
        pool.wait_ready(timeout=60)
        started = time.perf_counter()
        first = pool.acquire()
        assert time.perf_counter() - started < 0.05
        first.run("touch /workspace/dirty")
        pool.release(first)
        pool.wait_ready(timeout=60)
        seen = {pool.acquire().name for _ in range(2)}
        assert first.name not in seen
    assert all(not docker_engine.containers.list(filters={"name": name}) for name in [first.name, *seen])


def test_pool_start_failure_fails_acquire_at_once_with_the_cause(docker_engine):
    with SandboxPool(SandboxConfig(image="rock-no-such-image:0"), size=1) as pool:
        started = time.perf_counter()
        with pytest.raises(SandboxError, match="failed to start.*rock-no-such-image"):
            pool.acquire(timeout=60)
        assert time.perf_counter() - started < 30  # not the acquire timeout
        assert pool.ready == 0


def test_32_concurrent_sandboxes(docker_engine):
    async def one(i: int) -> str:
        async with AsyncSandbox(SandboxConfig(cpus=0.25, memory="128m")) as sb:
            return (await sb.run(f"echo sandbox-{i}")).output

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(32)))

    outputs = asyncio.run(main())
    assert outputs == [f"sandbox-{i}\n" for i in range(32)]


async def test_async_flavour_files_and_commands(docker_engine):
    async with AsyncSandbox() as sb:
        await sb.write_file("x.txt", "42\n")
        result = await sb.run("cat x.txt; cd /tmp")
        assert result.output == "42\n"
        assert (await sb.run("pwd")).output == "/tmp\n"
        assert await sb.read_file("/workspace/x.txt") == b"42\n"


class CounterEnv(SandboxEnv):
    """A tiny task: make counter.txt hold the seed, then run `done`."""

    max_steps = 3

    def setup(self, seed):
        self.target = seed
        self.sandbox.write_file("counter.txt", "0\n")
        return f"write {seed} into counter.txt, then run: done"

    def is_done(self, action, result):
        return action.strip() == "done"

    def reward(self):
        return float(self.sandbox.read_file("counter.txt").decode().strip() == str(self.target))


def test_gem_style_env(docker_engine):
    with CounterEnv() as env:
        observation, info = env.reset(seed=7)
        assert "7" in observation and info["seed"] == 7
        obs, reward, terminated, truncated, _ = env.step("echo 7 > counter.txt")
        assert (reward, terminated, truncated) == (0.0, False, False)
        obs, reward, terminated, truncated, _ = env.step("done")
        assert (reward, terminated) == (1.0, True)
        env.reset(seed=8)
        for _ in range(3):
            *_, terminated, truncated, _ = env.step("true")
        assert truncated and not terminated


def test_cli_says_how_to_start_the_engine(tmp_path):
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    proc = subprocess.run([sys.executable, "-m", "rock.cli", "ps"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Docker engine not reachable" in proc.stderr and "start it with" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_exec_returns_the_exit_code(docker_engine):
    proc = subprocess.run([sys.executable, "-m", "rock.cli", "exec", "--", "echo hi; exit 3"],
                          capture_output=True, text=True)
    assert proc.returncode == 3 and proc.stdout == "hi\n"
