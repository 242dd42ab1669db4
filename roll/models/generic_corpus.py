"""The tiny model's tokenizer corpus: text that no task family, agent transcript or test wrote.

It is the source of a fixed list of Python standard-library modules (code, docstrings and comments: English prose,
shell commands, paths, JSON-ish strings), read from the running interpreter's installation. A tokenizer trained on
it knows code and English in general and nothing of the tasks it is evaluated on: answers, file names and prompts
of the task families are split like any other text. The tiny model's cache key hashes the text, so another Python
version yields another tokenizer instead of a stale one."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

STDLIB_MODULES = (
    "argparse", "json.decoder", "json.encoder", "pathlib", "shutil", "subprocess", "textwrap", "tempfile",
    "logging", "csv", "configparser", "unittest.case", "string", "glob", "fnmatch", "shlex", "difflib", "tarfile",
    "zipfile", "http.client", "email.message", "calendar", "getopt", "optparse",
)


def module_source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise RuntimeError(f"the standard-library module {name!r} has no Python source here; the tiny tokenizer "
                           f"is trained on {STDLIB_MODULES}")
    return Path(spec.origin).read_text(encoding="utf-8")


def generic_corpus(seed: int = 0) -> Iterator[str]:
    """Paragraphs of the modules' source, in a fixed order (`seed` is accepted for the Corpus signature; the text
    does not depend on it)."""
    del seed
    for name in STDLIB_MODULES:
        for paragraph in module_source(name).split("\n\n"):
            if paragraph.strip():
                yield paragraph + "\n\n"
