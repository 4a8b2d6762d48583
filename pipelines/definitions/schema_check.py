"""JSON Schema validation with errors that point at the offending JSON path."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

from pipelines import resources
from pipelines.errors import CatalogError


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    path = resources.schemas_dir() / name
    return json.loads(path.read_text(encoding="utf-8"))


def _json_path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate(instance: Any, schema_name: str, source: str | Path, error_cls: type = CatalogError) -> None:
    """Raise `error_cls` naming `source` and the JSON path of the first (deepest) problem."""
    validator = jsonschema.Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(instance), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise error_cls(f"{source}: schema {schema_name} violated at {_json_path(best)}: {best.message}{more}")
