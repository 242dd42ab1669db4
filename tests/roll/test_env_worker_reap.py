"""Shutting the env workers down also removes the sandboxes of a worker that died before (Ray's OOM killer)."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from iflow.config import AgentConfig
from rock import SandboxConfig
from rock.engine import client
from roll.rollout.config import RolloutConfig
from roll.rollout.env_worker import EnvWorker

pytestmark = [pytest.mark.docker]


def test_closing_a_worker_reaps_a_dead_workers_sandboxes(sandbox_image, tiny_model_path, monkeypatch):
    monkeypatch.setattr("rock.reaper.start_background_reaper", lambda *a, **k: None)  # only close() may sweep
    worker = EnvWorker(0, str(tiny_model_path), SandboxConfig().model_dump(), AgentConfig().model_dump(),
                       RolloutConfig(pool_size=1).model_dump(), engines=[])
    worker.ready(timeout=120)
    dead = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import time
        from rock import SandboxPool
        pool = SandboxPool(size=2)
        pool.wait_ready(timeout=120)
        print(" ".join(s.name for s in list(pool._ready.queue)), flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    names = dead.stdout.readline().split()
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    # (any process on this host may sweep them too; the window before close() is kept to milliseconds)
    assert len(names) == 2 and all(client().containers.list(all=True, filters={"name": n}) for n in names)
    worker.close()
    assert not [n for n in names if client().containers.list(all=True, filters={"name": n})]
