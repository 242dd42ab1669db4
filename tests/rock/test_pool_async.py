"""Episodes waiting for a pool sandbox must not starve the running episodes' sandbox commands."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from rock import SandboxConfig, SandboxPool
from rock.sandbox import SandboxError


def test_waiting_acquirers_leave_the_executor_to_running_commands(docker_engine):
    """Pool of 1, four episodes waiting, an executor of two threads (asyncio's default is cores + 4): the episode
    that holds the sandbox still runs its commands at once, and the waiters get the released sandbox's
    replacement or time out cleanly. (Waiting in `asyncio.to_thread` held both threads: the command queued until
    the waiters' timeouts, and episodes hung.)"""
    with SandboxPool(SandboxConfig(), size=1) as pool:
        pool.wait_ready(timeout=60)

        async def scenario() -> list:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=2))
            holder = await pool.acquire_async(timeout=10)
            waiters = [asyncio.create_task(pool.acquire_async(timeout=30)) for _ in range(4)]
            await asyncio.sleep(0.3)  # the waiters are waiting now
            # the old code served this command only once a waiter's 30 s timeout freed a thread
            result = await asyncio.wait_for(holder.run("echo still-served", timeout=5), 15)
            assert result.exit_code == 0 and "still-served" in result.output
            await pool.release_async(holder)
            outcomes = await asyncio.gather(*waiters, return_exceptions=True)
            for got in outcomes:
                if not isinstance(got, BaseException):
                    await pool.release_async(got)
            return outcomes

        outcomes = asyncio.run(scenario())
    served = [o for o in outcomes if not isinstance(o, BaseException)]
    assert served, "the released sandbox's replacement went to a waiter"
    assert all(isinstance(o, SandboxError) for o in outcomes if isinstance(o, BaseException)), outcomes


def test_a_closed_pool_refuses_async_acquire(docker_engine):
    pool = SandboxPool(SandboxConfig(), size=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(pool.acquire_async(timeout=1))
