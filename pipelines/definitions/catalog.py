"""The task catalog: one YAML entry per dataset, loaded explicitly and validated against JSON Schema.

    >>> cat = load_catalog()                      # task_catalog/datasets/*.yaml
    >>> cat["cot_gsm8k"].fields
    {'question': 'string', 'answer': 'string', 'rationale': 'string'}

Nothing is registered globally: callers hold the returned `Catalog` and pass it on.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from pipelines import resources
from pipelines.definitions import safe_yaml
from pipelines.errors import CatalogError
from pipelines.loaders.base import RawRow
from pipelines.definitions.schema_check import validate


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
    source_dataset: str = ""
    info_source: str = ""
    inversion_categories: tuple[str, ...] = ()
    template_vars: Mapping[str, str] = field(default_factory=dict)
    fixtures: tuple[Mapping[str, object], ...] = ()
    notes: str = ""
    # The shipped sample (task_catalog/data/) read instead of the full source by `data: samples`
    # mixtures (the offline demo, tests); empty when the entry has none.
    sample_loader_type: str = ""
    sample_loader_args: Mapping[str, object] = field(default_factory=dict)

    @property
    def collection(self) -> str:
        """The primary collection (first listed); mixtures group by it."""
        return self.collections[0]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(f"{self.name}:{c}" for c in self.task_categories)

    @property
    def dataset(self) -> str:
        """The dataset in the paper's sense: NIV2 task files and P3 prompts name their source dataset."""
        return self.source_dataset or self.name

    @property
    def forward_categories(self) -> tuple[str, ...]:
        """Task categories that are not input inversions (what the paper counts as tasks)."""
        return tuple(c for c in self.task_categories if c not in self.inversion_categories)


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

    def filter(self, collection: str | None = None, category: str | None = None) -> list[DatasetEntry]:
        """Entries in `collection` (if given) having task category `category` (if given, case-insensitive)."""
        wanted = category.casefold() if category else None
        return [
            e for e in self
            if (collection is None or collection in e.collections)
            and (wanted is None or any(c.casefold() == wanted for c in e.task_categories))
        ]


def fixture_rows(entry: DatasetEntry) -> list[RawRow]:
    """The entry's `fixtures` as loader rows (ids `fixture:<n>` unless given)."""
    return [
        RawRow(str(f.get("row_id") or f"fixture:{i}"), dict(f["fields"])) for i, f in enumerate(entry.fixtures)
    ]


def _resolve_args(args: Mapping[str, object], base: Path) -> dict:
    """Make relative local paths absolute (relative to the entry file). URLs are left as they are."""

    def resolve(value):
        if isinstance(value, str):
            return value if "://" in value or Path(value).is_absolute() else str((base / value).resolve())
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    out = dict(args)
    for key in ("path", "paths", "data_dir", "data_files", "root"):
        if key in out:
            out[key] = resolve(out[key])
    return out


def parse_entry(raw: object, source: Path, content: bytes | None = None) -> DatasetEntry:
    validate(raw, "catalog_entry.schema.json", source)
    assert isinstance(raw, dict)
    extra = set(raw.get("inversion_categories", ())) - set(raw["task_categories"])
    if extra:
        raise CatalogError(f"{source}: inversion_categories {sorted(extra)} are not among task_categories")
    content = source.read_bytes() if content is None else content
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
        content_sha256=hashlib.sha256(content).hexdigest(),
        license=raw.get("license", ""),
        description=raw.get("description", ""),
        default_cap=raw.get("default_cap"),
        source_dataset=raw.get("source_dataset", ""),
        info_source=raw.get("info_source", ""),
        inversion_categories=tuple(raw.get("inversion_categories", ())),
        template_vars=dict(raw.get("template_vars", {})),
        fixtures=tuple(raw.get("fixtures", ())),
        notes=raw.get("notes", ""),
        sample_loader_type=raw.get("sample_loader", {}).get("type", ""),
        sample_loader_args=_resolve_args(raw.get("sample_loader", {}).get("args", {}), source.parent),
    )


def with_sample_source(entry: DatasetEntry) -> DatasetEntry:
    """The entry reading its shipped sample instead of the full source (mixtures with `data: samples`).
    Why a swap and not a second entry: the sample is the same task (same name, cap, templates), and
    the catalog's counts stay those of the Flan Collection."""
    if not entry.sample_loader_type:
        raise CatalogError(f"{entry.source_path}: dataset {entry.name} has no sample_loader (shipped sample), "
                           f"so a mixture with `data: samples` cannot use it")
    return dataclasses.replace(entry, loader_type=entry.sample_loader_type, loader_args=dict(entry.sample_loader_args))


def load_entry(path: Path) -> DatasetEntry:
    content = path.read_bytes()
    raw = safe_yaml.load_yaml(content, str(path), CatalogError)
    return parse_entry(raw, path, content)


def load_catalog(directory: str | Path | None = None, broken: list | None = None) -> Catalog:
    """Load and validate every `*.yaml` under `directory` (default: task_catalog/datasets).
    With a `broken` list, an entry that does not load is appended to it (`broken_entries`) and left
    out instead of failing the whole catalog."""
    root = Path(directory) if directory else resources.catalog_dir() / "datasets"
    if not root.is_dir():
        raise CatalogError(f"catalog directory {root} does not exist")
    entries: dict[str, DatasetEntry] = {}
    for path in sorted(root.rglob("*.yaml")):
        try:
            entry = load_entry(path)
            if entry.name in entries:
                raise CatalogError(f"{path}: dataset name {entry.name!r} already defined in {entries[entry.name].source_path}")
        except CatalogError as exc:
            if broken is None:
                raise
            from pipelines.definitions.broken_entries import describe

            broken.append(describe(path, exc))
            continue
        entries[entry.name] = entry
    if not entries:
        raise CatalogError(f"catalog directory {root} holds no *.yaml entries")
    return Catalog(entries)
