"""Reject unknown keys everywhere, including in section models that do not forbid extras themselves (pydantic would
silently drop them: a misspelt option must never be ignored)."""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from roll.config.errors import ConfigError


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]
    return []


def _value_models(annotation: Any) -> tuple[str, list[type[BaseModel]]]:
    """('list'|'dict', models) for list[Model] / dict[str, Model] fields."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple, set) and args:
        return "list", _model_types(args[0])
    if origin is dict and len(args) == 2:
        return "dict", _model_types(args[1])
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            kind, models = _value_models(arg)
            if models:
                return kind, models
    return "", []


def unknown_keys(model: type[BaseModel], data: Any, prefix: str = "") -> list[str]:
    """One message per key in `data` that `model` (recursively) does not declare, naming its dotted path."""
    if not isinstance(data, dict):
        return []
    fields = model.model_fields
    names = {name: name for name in fields}
    names.update({f.alias: name for name, f in fields.items() if f.alias})
    found = []
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            allowed = ", ".join(sorted(fields))
            found.append(f"{path}: unknown key (allowed here: {allowed})")
            continue
        annotation = fields[names[key]].annotation
        nested = _model_types(annotation)
        if nested and isinstance(value, dict):  # a union of models: the first that takes every key, else the first
            reports = [unknown_keys(candidate, value, path) for candidate in nested]
            found += next((r for r in reports if not r), reports[0])
            continue
        kind, models = _value_models(annotation)
        if len(models) == 1:
            items = enumerate(value) if kind == "list" and isinstance(value, list) else (
                value.items() if kind == "dict" and isinstance(value, dict) else [])
            for index, item in items:
                sub = f"{path}[{index}]" if kind == "list" else f"{path}.{index}"
                found += unknown_keys(models[0], item, sub)
    return found


def check_unknown_keys(model: type[BaseModel], data: Any) -> None:
    unknown = unknown_keys(model, data)
    if unknown:
        raise ConfigError("; ".join(unknown))
