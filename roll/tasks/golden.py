"""Golden trajectories for the SFT warm-up: `write_golden` runs the real iFlow agent with the scripted expert
(roll/tasks/expert.py) in real ROCK sandboxes, verifies each episode like a rollout and keeps the solved ones, so SFT
trains on exactly the token sequences the agent sees (same chat template, same prompts, same observations)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from iflow.trajectory import Trajectory, save_jsonl
from rock import SandboxConfig, SandboxPool
from roll.config.loader import load_config
from roll.rollout.episode import EpisodeRunner
from roll.rollout.progress import progress_bar
from roll.tasks import relay, secret_word
from roll.tasks import shortcut as shortcut_family
from roll.models.resolve import default_tiny_model
from roll.tasks.expert import ExpertPolicy, takes_shortcut
from roll.tasks.schema import TaskRecord
from roll.tasks.scripted import ScriptedPolicy


def write_golden(path: str | Path, n: int, seed: int = 0, *, model_path: str | Path | None = None,
                 options: Any = None, agent: Any = None, sandbox: Any = None, concurrency: int = 4,
                 split: str = "train", progress: bool = True, timeout: float = 1800.0,
                 shortcut_fraction: float = 0.0) -> dict[str, Any]:
    """Write `n` solved expert trajectories (JSON lines) for seed `seed` to `path`; returns a summary dict.

    model_path: the checkpoint whose tokenizer renders prompts (default: the tiny model). options: SecretWordOptions
    (the secret-word family, scripted expert) or RelayOptions (the relay family, the observing expert).
    agent: iflow AgentConfig (default: configs/agent/default.yaml's values). sandbox: rock SandboxConfig.
    shortcut_fraction: share of the episodes played by the privileged expert (why: roll/tasks/expert.py)."""
    if not 0.0 <= shortcut_fraction <= 1.0:
        raise ValueError(f"shortcut_fraction must be within [0, 1], got {shortcut_fraction}")
    return asyncio.run(asyncio.wait_for(
        _write_golden(Path(path), n, seed, model_path, options, agent, sandbox, concurrency, split, progress,
                      shortcut_fraction),
        timeout))


async def _write_golden(path: Path, n: int, seed: int, model_path: Any, options: Any, agent: Any, sandbox: Any,
                        concurrency: int, split: str, progress: bool, shortcut_fraction: float) -> dict[str, Any]:
    defaults = load_config("rollout")
    agent = agent or defaults.agent
    sandbox = sandbox or defaults.sandbox
    tokenizer = AutoTokenizer.from_pretrained(str(model_path or default_tiny_model()))
    tasks = golden_tasks(n, seed=seed, split=split, options=options)
    pool = SandboxPool(sandbox if isinstance(sandbox, SandboxConfig) else SandboxConfig(**sandbox),
                       size=concurrency)
    runner = EpisodeRunner(pool, agent)
    limit = asyncio.Semaphore(concurrency)
    solved: dict[int, Trajectory] = {}
    shortcuts, failed = 0, []
    try:
        with progress_bar("golden trajectories", total=n, enabled=progress) as bar:
            async def one(index: int, task: TaskRecord) -> None:
                nonlocal shortcuts
                shortcut = takes_shortcut(task, shortcut_fraction)
                async with limit:
                    result = await runner.run(task, expert_for(task, tokenizer, shortcut),
                                              trajectory_id=f"golden-{task.id}", group_id=task.id)
                if result.status == "ok" and result.trajectory.reward == 1.0:
                    result.trajectory.metadata["expert"] = "shortcut" if shortcut else "careful"
                    solved[index] = result.trajectory
                    shortcuts += shortcut
                else:
                    failed.append(f"{task.id}: {result.status} reward={result.trajectory.reward} "
                                  f"{result.error or result.trajectory.error or ''}".strip())
                bar.advance()
            await asyncio.gather(*(one(index, task) for index, task in enumerate(tasks)))
    finally:
        await asyncio.to_thread(pool.close)
    # In task order, not in the order the episodes finished: SFT batches are drawn by index, so the same seed must
    # give the same file (and the same SFT checkpoint) however the sandboxes were scheduled.
    save_jsonl([solved[index] for index in sorted(solved)], path, append=False)
    return {"path": str(path), "written": len(solved), "shortcuts": shortcuts, "failed": len(failed),
            "failures": failed[:10]}


def golden_tasks(n: int, seed: int = 0, split: str = "train", options: Any = None) -> Sequence[TaskRecord]:
    family = relay if isinstance(options, relay.RelayOptions) else \
        shortcut_family if isinstance(options, shortcut_family.ShortcutOptions) else secret_word
    return list(family.generate(n, seed=seed, split=split, options=options))  # type: ignore[arg-type]


def expert_for(task: TaskRecord, tokenizer: Any, shortcut: bool = False) -> Any:
    """The expert of the task's family: relay tasks get the observing expert or, with `shortcut` (only where a
    credential file is planted: `task.relay.plant`), the exploring one; shortcut tasks the careful expert or the
    exploring one (roll/tasks/shortcut.py)."""
    if task.metadata.get("family") == "shortcut":
        return ScriptedPolicy(shortcut_family.expert_calls(task, explore=shortcut), tokenizer)
    if task.metadata.get("family") == "relay":
        if shortcut and not task.metadata.get("key_path"):
            raise ValueError("the relay family has no privileged expert: use shortcut_fraction 0, or plant a "
                             "credential file (task.relay.plant: true) for the exploring expert")
        if shortcut:
            return ScriptedPolicy(shortcut_family.exploring_calls(task), tokenizer)
        return relay.ObservingExpert(task.instruction, tokenizer)
    return ExpertPolicy(task, tokenizer, shortcut)
