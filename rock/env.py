"""A GEM-style environment over a sandbox: `reset(seed) -> (observation, info)`,
`step(action) -> (observation, reward, terminated, truncated, info)`. Tasks subclass and override the hooks."""
from __future__ import annotations

from typing import Any

from rock.config import SandboxConfig
from rock.records import CommandResult
from rock.sandbox import Sandbox


class SandboxEnv:
    """Default behaviour: an action is a shell command, the observation its output; no reward until `reward()` is
    overridden. Subclasses set up the workspace in `setup(seed)`, decide termination in `is_done(action, result)`
    and score the episode in `reward()` (run after the episode, in the same sandbox)."""

    max_steps: int = 50

    def __init__(self, config: SandboxConfig | None = None, sandbox: Sandbox | None = None) -> None:
        self.config = config or SandboxConfig()
        self.sandbox = sandbox
        self._owns_sandbox = sandbox is None
        self.steps = 0

    # ---- hooks ---------------------------------------------------------------------------------------------
    def setup(self, seed: int | None) -> str:
        """Prepare the workspace; return the first observation (the task)."""
        return ""

    def is_done(self, action: str, result: CommandResult) -> bool:
        return False

    def reward(self) -> float:
        return 0.0

    # ---- the API -------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        if self._owns_sandbox:
            if self.sandbox is not None:
                self.sandbox.stop()
            self.sandbox = Sandbox(self.config).start()
        self.steps = 0
        observation = self.setup(seed)
        return observation, {"sandbox": self.sandbox.name, "seed": seed}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.sandbox is None:
            raise RuntimeError("call reset() before step()")
        self.steps += 1
        result = self.sandbox.run(action, tags={"step": self.steps})
        terminated = self.is_done(action, result)
        truncated = not terminated and self.steps >= self.max_steps
        reward = self.reward() if terminated else 0.0
        info = {"exit_code": result.exit_code, "timed_out": result.timed_out, "record_id": result.record_id}
        return result.output, reward, terminated, truncated, info

    def close(self) -> None:
        if self._owns_sandbox and self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None

    def __enter__(self) -> "SandboxEnv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
