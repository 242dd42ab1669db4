"""The command text an agent sent, as observations. Pipelines, lists and shell builtins never show up as a single
traced exec, so the text itself is matched too: once whole (for rules about the command line) and once per simple
command, whose first word stands in for the executable (for rules with a `path:`)."""
from __future__ import annotations

import shlex

import re2

from rock.telemetry.events import Observation
from rock.telemetry.rules import MAX_TEXT

SEPARATORS = set(";&|\n()`")
SHELLS = {"sh", "bash", "dash", "zsh", "ash", "ksh"}
# words that run the next word as a command: `sudo ssh -R ...` is an ssh
WRAPPERS = {"sudo", "exec", "command", "builtin", "env", "nice", "nohup", "setsid", "timeout", "time", "stdbuf",
            "xargs", "then", "do", "else", "elif", "if", "while", "until", "!", "{", "eval"}
MAX_SEGMENTS = 2000
MAX_DEPTH = 3


def split_simple_commands(text: str) -> list[str]:
    """Cut at unquoted `; & | newline ( ) backtick` and `$(`; quotes and backslashes are honoured."""
    segments, current, quote, index = [], [], "", 0
    while index < len(text) and len(segments) < MAX_SEGMENTS:
        char = text[index]
        if quote:
            current.append(char)
            if char == "\\" and quote == '"' and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char == "\\" and index + 1 < len(text):
            current.append(char + text[index + 1])
            index += 1
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "&" and (text[index - 1:index] in "<>" and index or text[index + 1:index + 2] == ">"):
            current.append(char)  # `2>&1`, `&>file`: a redirection, not a separator
        elif char in SEPARATORS or (char == "$" and text[index + 1:index + 2] == "("):
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    segments.append("".join(current))
    return [s.strip() for s in segments if s.strip()]


REDIRECTION = re2.compile(r"^(\d*|&)(>>?|<<?<?|<>|>&|<&|>\|)(.*)$")


def _words(segment: str) -> list[str]:
    """The words of a simple command without its redirections (`mount > /dev/null` is a plain `mount`)."""
    try:
        words = shlex.split(segment)
    except ValueError:  # an unbalanced quote: the words as typed
        words = segment.split()
    kept, skip_next = [], False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        match = REDIRECTION.search(word)
        if match is None:
            kept.append(word)
        elif not match.group(3):  # the target is the next word
            skip_next = True
    return kept


def _commands(words: list[str]) -> list[list[str]]:
    """The argv of the command a simple command runs, and of what its wrappers may run (`sudo -u me ssh -R ...`:
    every later word that is not an option is a candidate, at most a few)."""
    while words and "=" in words[0] and not words[0].startswith("="):  # FOO=bar cmd
        words = words[1:]
    found = [words] if words else []
    if words and words[0].rsplit("/", 1)[-1] in WRAPPERS:
        rest = [i for i in range(1, len(words)) if not words[i].startswith("-") and "=" not in words[i]]
        for start in rest[:4]:
            found += _commands(words[start:])[:4]
    return found


def simple_commands(text: str, depth: int = 0) -> list[list[str]]:
    """Every simple command in `text`, descending into `sh -c '...'` scripts."""
    commands = []
    for segment in split_simple_commands(text[:MAX_TEXT]):
        for argv in _commands(_words(segment)):
            commands.append(argv)
            name = argv[0].rsplit("/", 1)[-1]
            if depth >= MAX_DEPTH:
                continue
            if name in SHELLS and "-c" in argv[1:-1]:
                commands += simple_commands(argv[argv.index("-c", 1) + 1], depth + 1)
            elif name == "eval":
                commands += simple_commands(" ".join(argv[1:]), depth + 1)
    return commands[:MAX_SEGMENTS]


def command_observations(command: str, sandbox: str, started_at: float, cmd_tag: str = "") -> list[Observation]:
    """The whole text (no path: only argv rules apply) and one observation per simple command (path = first word;
    only rules with a `path:` apply, see `is_segment`)."""
    data = {"source": "command"}
    observations = [Observation(kind="exec", time=started_at, sandbox=sandbox, argv=command.split(" "),
                                cmd_tag=cmd_tag, data=data)]
    for argv in simple_commands(command):
        observations.append(Observation(kind="exec", time=started_at, sandbox=sandbox, path=argv[0], argv=argv,
                                        cmd_tag=cmd_tag, data={**data, "segment": True}))
    return observations


def is_segment(obs: Observation) -> bool:
    return bool(obs.data.get("segment"))
