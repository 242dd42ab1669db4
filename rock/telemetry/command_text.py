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
MAX_WRAPPERS = 3  # `sudo env nice ssh ...`; deeper nesting is not unwrapped
MAX_DEPTH = 3


SPECIAL = re2.compile(r"[;&|\n()`$'\"\\<>]")
MAX_SHLEX = 4096  # a longer simple command is split on whitespace (only its first words matter to path rules)


def split_simple_commands(text: str) -> list[str]:
    """Cut at unquoted `; & | newline ( ) backtick` and `$(` (not the `&` of `2>&1` or `&>`); quotes and backslashes
    are honoured. Jumps from one special character to the next, so plain text costs nothing in Python."""
    segments, begin, quote, skip_until = [], 0, "", -1
    for match in SPECIAL.finditer(text):
        index, char = match.start(), match.group()
        if index < skip_until:
            continue
        if len(segments) >= MAX_SEGMENTS:
            break
        if quote:
            if char == "\\" and quote == '"':
                skip_until = index + 2
            elif char == quote:
                quote = ""
        elif char == "\\":
            skip_until = index + 2
        elif char in "'\"":
            quote = char
        elif char == "&" and ((index and text[index - 1] in "<>") or text[index + 1:index + 2] == ">"):
            continue  # `2>&1`, `&>file`: a redirection, not a separator
        elif char in SEPARATORS or (char == "$" and text[index + 1:index + 2] == "("):
            segments.append(text[begin:index])
            begin = index + 1
    segments.append(text[begin:])
    return [s.strip() for s in segments if s.strip()]


def _shell_words(segment: str) -> list[str]:
    if len(segment) > MAX_SHLEX:
        return segment.split()
    try:
        return shlex.split(segment)
    except ValueError:  # an unbalanced quote: the words as typed
        return segment.split()


REDIRECTION = re2.compile(r"^(\d*|&)(>>?|<<?<?|<>|>&|<&|>\|)(.*)$")


def _words(segment: str) -> list[str]:
    """The words of a simple command without its redirections (`mount > /dev/null` is a plain `mount`)."""
    words = _shell_words(segment)
    kept, skip_next = [], False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        match = REDIRECTION.search(word) if ("<" in word or ">" in word) else None
        if match is None:
            kept.append(word)
        elif not match.group(3):  # the target is the next word
            skip_next = True
    return kept


def _commands(words: list[str], depth: int = 0) -> list[list[str]]:
    """The argv of the command a simple command runs, and of what its wrappers may run (`sudo -u me ssh -R ...`:
    each of the next few words that is not an option is a candidate), wrappers of wrappers a few levels deep."""
    while words and "=" in words[0] and not words[0].startswith("="):  # FOO=bar cmd
        words = words[1:]
    found = [words] if words else []
    if words and depth < MAX_WRAPPERS and words[0].rsplit("/", 1)[-1] in WRAPPERS:
        rest = [i for i in range(1, min(len(words), 8)) if not words[i].startswith("-") and "=" not in words[i]]
        for start in rest[:3]:
            found += _commands(words[start:], depth + 1)
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
    unique = {tuple(argv): argv for argv in simple_commands(command)}  # `a | grep | grep ...`: each shape once
    for argv in unique.values():
        observations.append(Observation(kind="exec", time=started_at, sandbox=sandbox, path=argv[0], argv=argv,
                                        cmd_tag=cmd_tag, data={**data, "segment": True}))
    return observations


def is_segment(obs: Observation) -> bool:
    return bool(obs.data.get("segment"))
