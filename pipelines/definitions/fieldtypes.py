"""Check a row against the field types its catalog entry declares (before any template sees it)."""
from __future__ import annotations

from typing import Any, Mapping


def _is(value: Any, type_name: str) -> bool:
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, Mapping)
    if type_name.startswith("list[") and isinstance(value, (list, tuple)):
        inner = type_name[5:-1]
        return all(_is(v, inner) for v in value)
    return False


def field_problem(fields: Mapping[str, Any], declared: Mapping[str, str]) -> str | None:
    """None if every declared field is present, not None, and of its type; else the first problem."""
    for name, type_name in declared.items():
        if name not in fields:
            return f"field {name!r} is missing"
        value = fields[name]
        if value is None:
            return f"field {name!r} is None"
        if not _is(value, type_name):
            return f"field {name!r} should be {type_name}, got {type(value).__name__}"
    return None
