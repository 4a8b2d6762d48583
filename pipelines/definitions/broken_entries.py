"""One broken catalog entry must not break every command.

`load_catalog(..., broken=[])` leaves an entry that does not load (bad YAML, schema, duplicate
name) out of the catalog and records it here instead of raising. Commands that do not need it
(`catalog list`, `mixtures show demo`, a build of a mixture that does not cover it) warn and go on;
`templates lint` reports it as a problem; `build` refuses a mixture that needs it (names it as a
member dataset, or covers a collection it would belong to), since building without it would
silently change the mixture.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import CatalogError


@dataclass(frozen=True)
class BrokenEntry:
    path: str
    message: str
    name: str  # the entry's `name` when the YAML parsed, else the file name without .yaml
    collections: tuple[str, ...] | None  # None when unknown (then any collection member may need it)

    def __str__(self) -> str:
        return self.message if self.message.startswith(self.path) else f"{self.path}: {self.message}"


def describe(path: Path, exc: Exception) -> BrokenEntry:
    """What is known about an entry that failed to load: its name and collections if readable."""
    from pipelines.definitions import safe_yaml

    name, collections = path.stem, None
    try:
        raw = safe_yaml.load_yaml(path.read_bytes(), str(path))
    except Exception:  # noqa: BLE001 - the entry is broken already; only guessing here
        raw = None
    if isinstance(raw, dict):
        if isinstance(raw.get("name"), str):
            name = raw["name"]
        if isinstance(raw.get("collections"), list) and all(isinstance(c, str) for c in raw["collections"]):
            collections = tuple(raw["collections"])
    return BrokenEntry(str(path), str(exc), name, collections)


def _members(mixture, excluded=frozenset()):
    excluded = set(excluded) | set(mixture.exclude)
    for m in mixture.members:
        if m.mixture:
            yield from _members(mixture.submixtures[m.mixture], excluded)
        else:
            yield m, excluded


def needed_by(mixture, broken: list[BrokenEntry]) -> list[BrokenEntry]:
    """The broken entries `mixture` (with its sub-mixtures) would include."""
    out = []
    for entry in broken:
        for member, excluded in _members(mixture):
            if entry.name in excluded:
                continue
            if member.dataset and member.dataset == entry.name:
                out.append(entry)
                break
            if member.collection and (entry.collections is None or member.collection in entry.collections):
                out.append(entry)
                break
    return out


def refuse_if_needed(mixture, broken: list[BrokenEntry]) -> None:
    needed = needed_by(mixture, broken)
    if needed:
        raise CatalogError(
            f"mixture {mixture.name} needs {len(needed)} catalog entr{'y' if len(needed) == 1 else 'ies'} that "
            f"do not load; fix {'it' if len(needed) == 1 else 'them'} first:\n  " + "\n  ".join(map(str, needed)))
