"""The one YAML reader for every file flanmix loads (catalog entries, template families, mixtures,
promptsource imports).

YAML files are written by authors and may come from anyone, so reading one must be bounded:

- aliases (`*name`) are bounded: a tree of a few aliases expands to billions of nodes (an "alias
  bomb" of 9 levels of 9 took 37 s and 3.6 GB before this reader existed), so a document whose
  expansion exceeds `MAX_NODES` nodes or `MAX_CHARS` scalar characters is refused. (Aliases stay
  allowed: NIV2 entries converted by PyYAML's dumper repeat fixture texts with `&id001`/`*id001`.);
- nesting deeper than `MAX_DEPTH` is refused (libyaml's composer recurses in C: 100k nested `[`
  crash the interpreter with a segmentation fault, so depth is checked on the event stream first);
- a key repeated in one mapping is an error (YAML would keep the last one silently);
- only plain data: the safe constructor (no `!!python` tags).

Every error is the caller's error class with the file name first:

    >>> load_yaml("a: 1\\nb: [2, 3]\\n", "x.yaml")
    {'a': 1, 'b': [2, 3]}
    >>> load_yaml("a: 1\\na: 2\\n", "x.yaml")
    Traceback (most recent call last):
    pipelines.errors.CatalogError: x.yaml: line 2: not valid YAML: duplicate key 'a' (first at line 1)
"""
from __future__ import annotations

from typing import Any

import yaml

from pipelines.errors import CatalogError, FlanmixError

MAX_DEPTH = 64  # nested mappings/sequences; the deepest shipped file nests 7
MAX_NODES = 200_000  # nodes after expanding aliases; the largest shipped file has ~3,000
MAX_CHARS = 16 * 1024 * 1024  # scalar characters after expanding aliases
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster


class Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, with duplicate keys refused (the event pre-pass has excluded aliases)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None,
                            f"duplicate key {key_node.value!r} (first at line {seen[key] + 1})", key_node.start_mark,
                        )
                    seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _line(mark) -> str:
    return f"line {mark.line + 1}: " if mark is not None else ""


def _check_events(text: str, max_depth: int, max_nodes: int, max_chars: int) -> str | None:
    """Why `text` may not be loaded (depth, expanded size), or None. Works on the event stream,
    which libyaml produces without recursion, so no input can exhaust the stack here. Each anchor's
    expanded size (nodes, scalar characters) is recorded when its node ends; an alias adds it."""
    anchors: dict[str, tuple[int, int]] = {}
    stack: list[list] = [[0, 0, None]]  # per open collection: nodes, chars, its anchor
    for event in yaml.parse(text, Loader=_BaseLoader):
        top = stack[-1]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                return f"{_line(event.start_mark)}alias *{event.anchor} names no anchor defined before it"
            nodes, chars = anchors[event.anchor]
            top[0] += nodes
            top[1] += chars
        elif isinstance(event, yaml.ScalarEvent):
            top[0] += 1
            top[1] += len(event.value)
            if event.anchor:
                anchors[event.anchor] = (1, len(event.value))
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([1, 0, event.anchor])
            if len(stack) - 1 > max_depth:
                return f"{_line(event.start_mark)}nested deeper than {max_depth} levels (safe_yaml.MAX_DEPTH)"
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            nodes, chars, anchor = stack.pop()
            if anchor:
                anchors[anchor] = (nodes, chars)
            stack[-1][0] += nodes
            stack[-1][1] += chars
        else:
            continue
        total_nodes, total_chars = sum(f[0] for f in stack), sum(f[1] for f in stack)
        if total_nodes > max_nodes or total_chars > max_chars:
            return (f"{_line(event.start_mark)}expands to more than {max_nodes} nodes or {max_chars} characters "
                    f"(aliases repeat what they name; safe_yaml.MAX_NODES / MAX_CHARS)")
    return None


def load_yaml(text: str | bytes, where: str, error: type[FlanmixError] = CatalogError, max_depth: int | None = None,
              loader: type = Loader) -> Any:
    """Parse one YAML document from `text` (str or UTF-8 bytes); `where` names the file in errors.
    `loader`: a subclass of `Loader` with extra tag constructors (promptsource's `!Template`)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    try:
        problem = _check_events(text, MAX_DEPTH if max_depth is None else max_depth, MAX_NODES, MAX_CHARS)
        if problem:
            raise error(f"{where}: {problem}")
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise error(f"{where}: {_line(mark)}not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise error(f"{where}: not valid YAML: {exc}") from None
