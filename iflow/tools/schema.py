"""Check tool arguments against the (small) JSON-schema subset the tools declare: object, string, integer, number,
boolean, array (with items), enum, required, additionalProperties=false. Errors are sentences for the model."""
from __future__ import annotations

from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,),
}


def _type_name(value: Any) -> str:
    return {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object",
            type(None): "null"}.get(type(value), type(value).__name__)


def _check(value: Any, schema: dict[str, Any], where: str) -> str | None:
    expected = schema.get("type")
    if expected in _TYPES:
        ok = isinstance(value, _TYPES[expected]) and not (expected in ("integer", "number") and isinstance(value, bool))
        if not ok:
            return f"{where} must be {expected}, got {_type_name(value)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {schema['enum']}, got {value!r}"
    if expected == "array" and "items" in schema:
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{where} needs at least {schema['minItems']} items, got {len(value)}"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{where} takes at most {schema['maxItems']} items, got {len(value)}"
        for index, item in enumerate(value):
            error = _check(item, schema["items"], f"{where}[{index}]")
            if error:
                return error
    if expected == "object":
        return check_object(value, schema, where)
    return None


def check_object(arguments: dict[str, Any], schema: dict[str, Any], where: str = "arguments") -> str | None:
    properties = schema.get("properties", {})
    missing = [name for name in schema.get("required", []) if name not in arguments]
    if missing:
        return f"{where} is missing required {', '.join(repr(m) for m in missing)}"
    if schema.get("additionalProperties") is False:
        unknown = [name for name in arguments if name not in properties]
        if unknown:
            return (f"{where} has unknown {', '.join(repr(u) for u in unknown)}; "
                    f"allowed: {', '.join(properties) or 'none'}")
    for name, value in arguments.items():
        if name in properties:
            error = _check(value, properties[name], f"{name!r}")
            if error:
                return error
    return None


def validate_arguments(tool_name: str, arguments: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """None when valid, else an error sentence naming the tool and the bad argument."""
    try:
        error = check_object(arguments, schema)
    except Exception as exc:  # noqa: BLE001 - validation must never crash the agent
        error = f"could not check arguments ({type(exc).__name__}: {exc})"
    return f"invalid arguments for {tool_name}: {error}" if error else None
