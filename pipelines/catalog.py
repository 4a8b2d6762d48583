"""The task catalog: one YAML entry per dataset, loaded explicitly and validated against JSON Schema.

    >>> cat = load_catalog()                      # task_catalog/datasets/*.yaml
    >>> cat["cot_gsm8k"].fields
    {'question': 'string', 'answer': 'string', 'rationale': 'string'}

Nothing is registered globally: callers hold the returned `Catalog` and pass it on.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import yaml

from pipelines import resources
from pipelines.errors import CatalogError
from pipelines.schema_check import validate


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the collection. A task is (dataset x task category)."""

    name: str
    collections: tuple[str, ...]
    task_categories: tuple[str, ...]
    languages: tuple[str, ...]
    loader_type: str
    loader_args: Mapping[str, object]
    splits: Mapping[str, str]
    fields: Mapping[str, str]
    templates: tuple[str, ...]
    source_path: str
    content_sha256: str
    license: str = ""
    description: str = ""
    default_cap: int | None = None

    @property
    def collection(self) -> str:
        """The primary collection (first listed); mixtures group by it."""
        return self.collections[0]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{c}" for c in self.task_categories)


@dataclass(frozen=True)
class Catalog:
    entries: Mapping[str, DatasetEntry] = field(default_factory=dict)

    def __getitem__(self, name: str) -> DatasetEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise CatalogError(f"unknown dataset {name!r}; `flanmix catalog list` shows the catalog") from None

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self.entries[n] for n in sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def by_collection(self, collection: str) -> list[DatasetEntry]:
        return [e for e in self if collection in e.collections]


def _resolve_args(args: Mapping[str, object], base: Path) -> dict:
    """Make relative local paths absolute (relative to the entry file). URLs are left as they are."""
    out = dict(args)
    for key in ("path", "paths", "data_dir", "data_files"):
        value = out.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            out[key] = str((base / value).resolve())
        elif isinstance(value, list):
            out[key] = [
                str((base / v).resolve()) if isinstance(v, str) and "://" not in v and not Path(v).is_absolute() else v
                for v in value
            ]
    return out


def parse_entry(raw: object, source: Path) -> DatasetEntry:
    validate(raw, "catalog_entry.schema.json", source)
    assert isinstance(raw, dict)
    return DatasetEntry(
        name=raw["name"],
        collections=tuple(raw["collections"]),
        task_categories=tuple(raw["task_categories"]),
        languages=tuple(raw["languages"]),
        loader_type=raw["loader"]["type"],
        loader_args=_resolve_args(raw["loader"].get("args", {}), source.parent),
        splits=dict(raw["splits"]),
        fields=dict(raw["fields"]),
        templates=tuple(raw["templates"]),
        source_path=str(source),
        content_sha256=hashlib.sha256(source.read_bytes()).hexdigest(),
        license=raw.get("license", ""),
        description=raw.get("description", ""),
        default_cap=raw.get("default_cap"),
    )


def load_entry(path: Path) -> DatasetEntry:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_entry(raw, path)


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Load and validate every `*.yaml` under `directory` (default: task_catalog/datasets)."""
    root = Path(directory) if directory else resources.catalog_dir() / "datasets"
    if not root.is_dir():
        raise CatalogError(f"catalog directory {root} does not exist")
    entries: dict[str, DatasetEntry] = {}
    for path in sorted(root.rglob("*.yaml")):
        entry = load_entry(path)
        if entry.name in entries:
            raise CatalogError(f"{path}: dataset name {entry.name!r} already defined in {entries[entry.name].source_path}")
        entries[entry.name] = entry
    if not entries:
        raise CatalogError(f"catalog directory {root} holds no *.yaml entries")
    return Catalog(entries)
