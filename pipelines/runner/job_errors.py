"""Errors raised inside the Beam job, told back to the user in one line.

A `FlanmixError` raised by a DoFn (a dead-letter limit, a publish check) reaches the launcher
wrapped by the runner: a RuntimeError whose text carries the worker's traceback, or the original
type with "[while running 'Stage']" appended. `flanmix_error_in` finds the user-facing message in
either, so the CLI prints `flanmix: error: <message>` instead of a 260-line traceback.

    >>> flanmix_error_in(RuntimeError("Traceback ...\\npipelines.publish.PublishError: x is missing [while running 'Publish']"))
    'x is missing'
"""
from __future__ import annotations

import importlib
import re

from pipelines.errors import FlanmixError

_LINE = re.compile(r"^(pipelines(?:\.\w+)+)\.(\w+): (.+?)(?: \[while running '[^']*'\])*$", re.MULTILINE)


def _is_flanmix_error(module: str, name: str) -> bool:
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, FlanmixError)


def flanmix_error_in(exc: BaseException) -> str | None:
    """The message of the last FlanmixError named in `exc` (or its chain), or None."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, FlanmixError):
            return re.sub(r"(?: \[while running '[^']*'\])+$", "", str(exc))
        found = [m for m in _LINE.finditer(str(exc)) if _is_flanmix_error(m.group(1), m.group(2))]
        if found:
            return found[-1].group(3)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
