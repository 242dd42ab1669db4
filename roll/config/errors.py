"""Config errors as one line: the dotted key path and what was expected."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ConfigError(ValueError):
    """A composed config is invalid. `str(error)` is one line naming the key path(s)."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path(loc: tuple[Any, ...], prefix: str) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("function-after", "function-before", "function-wrap", "function-plain") or str(item).startswith(
                ("function-", "literal[", "union[")):
            continue
        else:
            parts.append(str(item))
    return ".".join(parts) or "<root>"


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """`rollout.group_size: expected an integer >= 1 (got 0); engine.backend: ...` on one line."""
    seen: set[str] = set()
    messages = []
    for item in error.errors():
        path = _path(tuple(item["loc"]), prefix)
        if item["type"] == "extra_forbidden":
            text = f"{path}: unknown key"
        elif item["type"] == "missing":
            text = f"{path}: required key is missing"
        else:
            msg = item["msg"].replace("Input should be", "expected").replace("Value error, ", "")
            got = "" if "got " in msg else f" (got {_short(item.get('input'))})"
            text = msg if path == "<root>" else f"{path}: {msg}{got}"  # a whole-config check names its own keys
        if text not in seen:
            seen.add(text)
            messages.append(text.replace("\n", " "))
    return "; ".join(messages)
