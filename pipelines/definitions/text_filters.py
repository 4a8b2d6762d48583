"""Jinja filters for the catalog's `template_vars`: the per-dataset clean-ups FLAN's preprocessors apply
to raw rows (cut a passage at a marker, drop tags, make a meaning representation readable), written as
small pure functions so an entry states its preprocessing as data.

Every filter takes and returns plain strings/lists, never touches files or globals, and is registered in
the template sandbox by `pipelines.definitions.templates.make_environment`.

    >>> regex_replace("a  b   c", r"\\s+", " ")
    'a b c'
"""
from __future__ import annotations

import re
from typing import Callable

_MAX_PATTERN = 200


def _compile(pattern: str) -> re.Pattern:
    if len(pattern) > _MAX_PATTERN:
        raise ValueError(f"regex pattern longer than {_MAX_PATTERN} characters")
    return re.compile(pattern)


def regex_replace(text: str, pattern: str, replacement: str = "") -> str:
    """`text` with every match of `pattern` replaced (Python `re` syntax; `\\1` backreferences)."""
    return _compile(pattern).sub(replacement, str(text))


def regex_split(text: str, pattern: str) -> list[str]:
    """`text` split at every match of `pattern`."""
    return _compile(pattern).split(str(text))


FILTERS: dict[str, Callable] = {
    "regex_replace": regex_replace,
    "regex_split": regex_split,
}


def numbered_lines(items, limit: int | None = None) -> str:
    """The first `limit` items (all when None) as "1. item" lines joined by newlines, the way FLAN shows
    CoQA's questions/answers and the opinion_abstracts reviews/arguments so a model can refer to them by number.

    >>> numbered_lines(["a", "b", "c"], 2)
    '1. a\\n2. b'
    """
    chosen = list(items)[:limit] if limit is not None else list(items)
    return "\n".join(f"{i}. {item}" for i, item in enumerate(chosen, 1))


FILTERS["numbered_lines"] = numbered_lines


def mark_word(text: str, index: int, word: str, marker: str = "*") -> str:
    """`text` with the space-separated word at `index` wrapped in `marker`, the way WSC-style rows point
    at a pronoun by word position (SuperGLUE's `span2_index`). Only the leading `word` part is wrapped, so
    punctuation stuck to it stays outside; a position that does not hold `word` is an error (a dead
    letter), because marking the wrong word would silently change the question.

    >>> mark_word("Mark gave it away because he was tired.", 5, "he")
    'Mark gave it away because *he* was tired.'
    >>> mark_word("The cup fell and it broke.", 4, "it")
    'The cup fell and *it* broke.'
    """
    words = str(text).split(" ")
    if not 0 <= index < len(words) or not words[index].startswith(word):
        raise ValueError(f"word {index} of the text is not {word!r}")
    words[index] = f"{marker}{word}{marker}{words[index][len(word):]}"
    return " ".join(words)


FILTERS["mark_word"] = mark_word
