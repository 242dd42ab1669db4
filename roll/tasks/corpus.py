"""Deterministic offline text for training the tiny model's tokenizer: agent transcripts of the embedded task family
rendered exactly as the iFlow agent renders them (its system prompt, tool-call text form and observation wrapping),
plus Python-ish code, shell output and prose. The corpus lives with the tasks and is handed to the model package
(`task_tiny_model`), which knows nothing of tasks; the tiny model's cache key hashes the text, so a change in the
agent's prompts yields a new tokenizer instead of a stale one."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

from jinja2.sandbox import ImmutableSandboxedEnvironment

from iflow.context import wrap_observation
from iflow.prompts import build_system_prompt
from iflow.tools import ToolRegistry
from iflow.trajectory import ToolCall
from roll.models.chat_template import CHAT_TEMPLATE
from roll.models.config import ModelConfig
from roll.models.smollm2 import ensure_smollm2
from roll.models.tiny import ensure_tiny_model
from roll.tasks.expert import completion_text, expert_calls
from roll.tasks.secret_word import SecretWordOptions, make_task
from roll.tasks.words import SECRET_WORDS

_ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
_ENV.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
_TEMPLATE = _ENV.from_string(CHAT_TEMPLATE)

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "bash", "description": "Run a bash command in the workspace and return its output.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
    {"type": "function", "function": {
        "name": "submit", "description": "Finish the task.", "parameters": {"type": "object", "properties": {}}}},
]

_IDENTS = tuple("""
parse load value items result count total config path data name index token score reward batch size line text state
read write open close file files folder list dict set get put update delete remove insert append extend sort filter
map reduce sum min max mean sample random seed step steps epoch model train test check verify run runs command output
input error errors warning message messages agent tool tools call calls task tasks answer word words secret note
notes memo draft plan todo log logs hint clue letter diary report status exit code return yield class self init
start stop begin end first last next prev left right top bottom upper lower key keys values number numbers string
bytes buffer stream queue stack graph node nodes edge edges tree leaf root parent child children user users group
groups policy version engine worker workers sandbox image shell bash python pytest assert fixture module package
import export format parser lexer source target copy move rename match search find replace split join strip lower
""".split())
_SENTENCE_WORDS = tuple("""
the a an this that these those is are was were be been has have had do does did can could will would should may
must not no yes and or but if then else when while for with without from into onto over under about after before
read the file and write the answer then submit find which word is hidden in folder check output carefully every
line each time only once more less first second third new old small large good bad easy hard quick slow right wrong
please use tools to solve task workspace sandbox agent command note says contains names secret decoy ignore other
""".split())


def render_chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                add_generation_prompt: bool = False) -> str:
    """The chat template rendered the way transformers renders it (trim_blocks, lstrip_blocks, tojson)."""
    return _TEMPLATE.render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)


def _observation(task: Any, command: str) -> str:
    if command.startswith("cat "):
        path = command[4:]
        if path in task.files:
            return task.files[path]
        return f"cat: {path}: No such file or directory\n[exit code: 1]"
    if command.startswith("ls"):
        return "\n".join(sorted({p.split("/")[0] for p in task.files}))
    return "(no output)"


def _transcript(index: int, rng: random.Random) -> str:
    names = ["bash", "submit"] if rng.random() < 0.8 else list(ToolRegistry.from_names().tools)
    system = build_system_prompt(ToolRegistry.from_names(names).schemas(), "/workspace")
    options = SecretWordOptions(hops=rng.choice([1, 1, 2]), distractors=rng.randint(0, 3))
    task = make_task(index, seed=10_000 + index % 7, split=rng.choice(["train", "eval"]), options=options)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system},
                                      {"role": "user", "content": task.instruction}]
    calls = expert_calls(task)
    if rng.random() < 0.3:
        calls.insert(0, ToolCall(name="bash", arguments={"command": "ls"}))
    for call in calls:
        messages.append({"role": "assistant", "content": completion_text(call)})
        if call.name == "submit":
            result = "Submitted (no git repository: summary only)."
        else:
            result = _observation(task, call.arguments["command"])
        messages.append({"role": "user", "content": wrap_observation(result)})
    return render_chat(messages)


def _code(rng: random.Random) -> str:
    a, b, c = rng.sample(_IDENTS, 3)
    n = rng.randint(0, 9)
    return rng.choice([
        f"def {a}_{b}({c}):\n    return [{c} for {c} in {b} if {c} > {n}]\n",
        f"import os\n\n\ndef {a}(path):\n    with open(path) as f:\n        return f.read().strip()\n",
        f"class {a.title()}:\n    def __init__(self, {b}={n}):\n        self.{b} = {b}\n",
        (f"$ python3 -m pytest -q\n{'.' * n}F\nFAILED test_{a}.py::test_{b} - AssertionError: {n} != {n + 1}\n"
         f"1 failed, {n} passed in 0.{n}2s\n"),
        f"$ ls\n{a}.py  {b}.txt  answer.txt  README.md\n",
        f"$ cat {b}.txt\ncat: {b}.txt: No such file or directory\n",
        (f"Traceback (most recent call last):\n  File \"{a}.py\", line {n + 1}, in <module>\n"
         f"NameError: name '{c}' is not defined\n"),
        f"if __name__ == \"__main__\":\n    print({a}({n}))\n",
    ])


def _prose(rng: random.Random) -> str:
    words = [rng.choice(_SENTENCE_WORDS + _IDENTS) for _ in range(rng.randint(6, 16))]
    return " ".join(words).capitalize() + rng.choice([".", ".", "?", ":"]) + "\n"


def corpus(seed: int = 0, transcripts: int = 600, snippets: int = 1500) -> Iterator[str]:
    rng = random.Random(seed)
    for index in range(transcripts):
        yield _transcript(index, rng)
    for _ in range(snippets):
        yield _code(rng)
        yield _prose(rng)
    for word in SECRET_WORDS:  # every secret word, in the forms the agent sees and writes
        yield f"The secret word is {word}.\necho {word} > answer.txt\n\"{word}\"\n"


def task_tiny_model(path: str | Path | None = None, **overrides: Any) -> Path:
    """The tiny checkpoint (DEFAULT_SPEC + overrides) whose tokenizer is trained on this task family's corpus."""
    return ensure_tiny_model(path, corpus=corpus, **overrides)


def resolve_model_path(model: ModelConfig) -> Path:
    """The checkpoint directory of the `model` section: its `path`, else the built-in model it names (converted or
    built once, then cached)."""
    if model.path is not None:
        return Path(model.path)
    if model.builtin == "smollm2":
        return ensure_smollm2()
    return task_tiny_model(**model.tiny)
