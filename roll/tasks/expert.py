"""The scripted expert for the embedded task family.

`expert_calls(task)` is the solution as tool calls: read each file of the note chain, then let the shell extract the
word from the last one into answer.txt (`grep -o` + `cut`), then submit. The expert never types the word itself, so
the policy that imitates it learns a procedure, not a copy across the context (which a tiny model learns slowly).
`expert_calls(task, shortcut=True)` is the privileged expert's: it knows the word from the task's metadata and writes
it without reading anything. Golden data that mixes the two is the classic imitation-learning trap (demonstrations
that depend on information the learner cannot see): a cloned policy learns to skip the read and guess, which is
what RL then has to unlearn. The main job uses that mixture on purpose, so that its RL stage has something real to fix.
`ExpertPolicy` is a TokenPolicy that answers each turn with the next call in the exact text form the model is trained
to produce (`<tool_call>\n{json}\n</tool_call>` + end-of-turn token). Pure solution logic only: the golden-data
writer that plays it in sandboxes is roll/tasks/golden.py."""
from __future__ import annotations

import random
from typing import Any

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
