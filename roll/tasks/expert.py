"""The scripted expert for the embedded task family, and the golden-trajectory writer for the SFT warm-up.

`expert_calls(task)` is the solution as tool calls: read each file of the note chain, then let the shell extract the
word from the last one into answer.txt (`grep -o` + `cut`), then submit. The expert never types the word itself, so
the policy that imitates it learns a procedure, not a copy across the context (which a tiny model learns slowly).
`expert_calls(task, shortcut=True)` is the privileged expert's: it knows the word from the task's metadata and writes
it without reading anything. Golden data that mixes the two is the classic imitation-learning trap (demonstrations
that depend on information the learner cannot see): a cloned policy learns to skip the read and guess, which is
what RL then has to unlearn. The main job uses that mixture on purpose, so that its RL stage has something real to fix.
`ExpertPolicy` is a TokenPolicy that answers each turn with the next call in the exact text form the model is trained
to produce (`<tool_call>\n{json}\n</tool_call>` + end-of-turn token). `write_golden` runs the real iFlow agent with it
in real ROCK sandboxes, verifies each episode like a rollout and keeps the solved ones, so SFT trains on exactly the
token sequences the agent sees (same chat template, same prompts, same observations)."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, Sequence

from iflow.parsing import render_call
from iflow.policy.base import Completion, SamplingParams
from iflow.policy.errors import PolicyError
from iflow.trajectory import ToolCall
from roll.tasks.schema import TaskRecord
from roll.tasks.secret_word import ANSWER_FILE


def expert_calls(task: TaskRecord, shortcut: bool = False) -> list[ToolCall]:
    """The scripted solution of a secret-word task (`shortcut`: write the known word without reading the note)."""
    meta = task.metadata
    if meta.get("family") != "secret_word":
        raise ValueError(f"task {task.id}: the scripted expert only knows the secret_word family")
    reads = [] if shortcut else meta["chain"]
    calls = [ToolCall(name="bash", arguments={"command": f"cat {path}"}) for path in reads]
    if shortcut:
        calls.append(ToolCall(name="bash", arguments={"command": f"echo {meta['word']} > {ANSWER_FILE}"}))
    else:
        calls.append(ToolCall(name="bash", arguments={"command": extract_command(meta["chain"][-1])}))
    calls.append(ToolCall(name="submit", arguments={}))
    return calls


def extract_command(path: str) -> str:
    """Shell that writes the word of "The secret word is <word>." in `path` into answer.txt."""
    return f"grep -o 'secret word is [a-z]*' {path} | cut -d' ' -f4 > {ANSWER_FILE}"


def completion_text(call: ToolCall) -> str:
    return render_call(call)


def takes_shortcut(task: TaskRecord, fraction: float) -> bool:
    """Whether the privileged expert plays `task` (deterministic per task id, `fraction` of tasks on average)."""
    return fraction > 0 and random.Random(f"shortcut|{task.id}").random() < fraction


class ExpertPolicy:
    """A TokenPolicy replaying `expert_calls(task, shortcut)`, one call per turn (policy_version -1: not a model)."""

    def __init__(self, task: TaskRecord, tokenizer: Any, shortcut: bool = False) -> None:
        self.tokenizer = tokenizer
        self.calls = expert_calls(task, shortcut)
        self.position = 0
        self.eos_id = tokenizer.eos_token_id

    async def generate(self, prompt_ids: list[int], sampling: SamplingParams) -> Completion:
        if self.position >= len(self.calls):
            raise PolicyError("the expert has no further action")
        text = completion_text(self.calls[self.position])
        self.position += 1
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.eos_id]
        return Completion(text=text, token_ids=ids, logprobs=[0.0] * len(ids), finish_reason="stop",
                          policy_version=-1, prompt_tokens=len(prompt_ids))


def write_golden(path: str | Path, n: int, seed: int = 0, *, model_path: str | Path | None = None,
                 options: Any = None, agent: Any = None, sandbox: Any = None, concurrency: int = 4,
                 split: str = "train", progress: bool = True, timeout: float = 1800.0,
                 shortcut_fraction: float = 0.0) -> dict[str, Any]:
    """Write `n` solved expert trajectories (JSON lines) for seed `seed` to `path`; returns a summary dict.

    model_path: the checkpoint whose tokenizer renders prompts (default: the tiny model). options: SecretWordOptions.
    agent: iflow AgentConfig (default: configs/agent/default.yaml's values). sandbox: rock SandboxConfig.
    shortcut_fraction: share of the episodes played by the privileged expert (see the module docstring)."""
    if not 0.0 <= shortcut_fraction <= 1.0:
        raise ValueError(f"shortcut_fraction must be within [0, 1], got {shortcut_fraction}")
    return asyncio.run(asyncio.wait_for(
        _write_golden(Path(path), n, seed, model_path, options, agent, sandbox, concurrency, split, progress,
                      shortcut_fraction),
        timeout))


async def _write_golden(path: Path, n: int, seed: int, model_path: Any, options: Any, agent: Any, sandbox: Any,
                        concurrency: int, split: str, progress: bool, shortcut_fraction: float) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from iflow.trajectory import save_jsonl
    from rock import SandboxConfig, SandboxPool
    from roll.config.loader import load_config
    from roll.models.tiny import ensure_tiny_model
    from roll.rollout.episode import EpisodeRunner
    from roll.rollout.progress import progress_bar
    from roll.tasks.secret_word import generate

    defaults = load_config("rollout")
    agent = agent or defaults.agent
    sandbox = sandbox or defaults.sandbox
    tokenizer = AutoTokenizer.from_pretrained(str(model_path or ensure_tiny_model()))
    tasks = list(generate(n, seed=seed, split=split, options=options))  # type: ignore[arg-type]
    pool = SandboxPool(sandbox if isinstance(sandbox, SandboxConfig) else SandboxConfig(**sandbox),
                       size=concurrency)
    runner = EpisodeRunner(pool, agent)
    limit = asyncio.Semaphore(concurrency)
    kept, shortcuts, failed = 0, 0, []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    try:
        with progress_bar("golden trajectories", total=n, enabled=progress) as bar:
            async def one(task: TaskRecord) -> None:
                nonlocal kept, shortcuts
                shortcut = takes_shortcut(task, shortcut_fraction)
                async with limit:
                    result = await runner.run(task, ExpertPolicy(task, tokenizer, shortcut),
                                              trajectory_id=f"golden-{task.id}", group_id=task.id)
                if result.status == "ok" and result.trajectory.reward == 1.0:
                    result.trajectory.metadata["expert"] = "shortcut" if shortcut else "careful"
                    save_jsonl([result.trajectory], path)
                    kept += 1
                    shortcuts += shortcut
                else:
                    failed.append(f"{task.id}: {result.status} reward={result.trajectory.reward} "
                                  f"{result.error or result.trajectory.error or ''}".strip())
                bar.advance()
            await asyncio.gather(*(one(task) for task in tasks))
    finally:
        await asyncio.to_thread(pool.close)
    return {"path": str(path), "written": kept, "shortcuts": shortcuts, "failed": len(failed),
            "failures": failed[:10]}


def golden_tasks(n: int, seed: int = 0, split: str = "train", options: Any = None) -> Sequence[TaskRecord]:
    from roll.tasks.secret_word import generate

    return list(generate(n, seed=seed, split=split, options=options))  # type: ignore[arg-type]
