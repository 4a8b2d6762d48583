"""Mixtures: which datasets a corpus is built from, with which seed and sequence lengths.

A mixture is a YAML file in task_catalog/mixtures/ validated by schemas/mixture.schema.json.
Members name a dataset or a whole collection.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines import resources
from pipelines.catalog import Catalog, DatasetEntry
from pipelines.errors import CatalogError
from pipelines.schema_check import validate

DEFAULT_LENGTHS = {"inputs": 2048, "targets": 512}


@dataclass(frozen=True)
class MixtureMember:
    dataset: str | None = None
    collection: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Mixture:
    name: str
    members: tuple[MixtureMember, ...]
    seed: int = 0
    split: str = "train"
    inputs_length: int = DEFAULT_LENGTHS["inputs"]
    targets_length: int = DEFAULT_LENGTHS["targets"]
    overlong: str = "truncate"
    description: str = ""
    source_path: str = ""


def mixtures_dir() -> Path:
    return resources.catalog_dir() / "mixtures"


def load_mixture(name_or_path: str | Path) -> Mixture:
    path = Path(name_or_path)
    if not path.suffix:
        path = mixtures_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in mixtures_dir().glob("*.yaml"))
        raise CatalogError(f"mixture {name_or_path!r} not found (looked for {path}); known mixtures: {known}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    validate(raw, "mixture.schema.json", path)
    lengths = raw.get("sequence_length", DEFAULT_LENGTHS)
    return Mixture(
        name=raw["name"],
        members=tuple(MixtureMember(m.get("dataset"), m.get("collection"), m.get("weight", 1.0)) for m in raw["members"]),
        seed=raw.get("seed", 0),
        split=raw.get("split", "train"),
        inputs_length=lengths["inputs"],
        targets_length=lengths["targets"],
        overlong=raw.get("overlong", "truncate"),
        description=raw.get("description", ""),
        source_path=str(path),
    )


def resolve_datasets(mixture: Mixture, catalog: Catalog) -> list[DatasetEntry]:
    """The catalog entries a mixture covers, in name order, each once."""
    chosen: dict[str, DatasetEntry] = {}
    for member in mixture.members:
        if member.dataset:
            if member.dataset not in catalog:
                raise CatalogError(f"{mixture.source_path}: member dataset {member.dataset!r} is not in the catalog")
            chosen[member.dataset] = catalog[member.dataset]
        else:
            entries = catalog.by_collection(member.collection)
            if not entries:
                raise CatalogError(f"{mixture.source_path}: collection {member.collection!r} has no datasets in the catalog")
            chosen.update((e.name, e) for e in entries)
    for entry in chosen.values():
        if mixture.split not in entry.splits:
            raise CatalogError(f"{entry.source_path}: dataset {entry.name} has no split {mixture.split!r} (has {sorted(entry.splits)})")
    return [chosen[n] for n in sorted(chosen)]
