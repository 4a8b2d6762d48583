"""Counts of datasets, tasks and task categories per collection (`flanmix catalog stats`).

Definitions (task_catalog/README.md explains how they line up with the paper's 473 / 146 / 1,836):
  entries         catalog entries (an NIV2 task file, a P3 prompt and a Flan 2021 dataset are one each)
  datasets        distinct datasets in the paper's sense: an entry's `source_dataset`, else its name
  tasks           (entry x task category) pairs, the rows of flan_collection_info.csv
  forward_tasks   tasks minus input-inversion categories (`inversion_categories`): the paper's count
  categories      distinct task categories; forward_categories: the same without inversion categories

    >>> catalog_stats(load_catalog())["total"]["tasks"]
    1943
"""
from __future__ import annotations

from typing import Iterable

from pipelines.definitions.catalog import Catalog, DatasetEntry

PAPER = {"datasets": 473, "categories": 146, "forward_tasks": 1836}
COLLECTIONS = ("flan2021", "t0", "niv2", "cot", "dialog", "program_synthesis")  # Flan's; "user" is not one


def flan_only(catalog: Catalog) -> Catalog:
    """The entries of Flan's collections: what checks against the paper's numbers look at, so that
    an author's own `user` datasets never change them."""
    return Catalog({e.name: e for e in catalog if set(e.collections) & set(COLLECTIONS)})


def _count(entries: Iterable[DatasetEntry]) -> dict[str, int]:
    entries = list(entries)
    categories = {c for e in entries for c in e.task_categories}
    forward = {c for e in entries for c in e.forward_categories}
    return {
        "entries": len(entries),
        "datasets": len({e.dataset for e in entries}),
        "tasks": sum(len(e.task_categories) for e in entries),
        "forward_tasks": sum(len(e.forward_categories) for e in entries),
        "categories": len(categories),
        "forward_categories": len(forward),
    }


def catalog_stats(catalog: Catalog) -> dict[str, dict[str, int]]:
    """{collection: counts} for every collection present, plus "total" (each entry counted once)."""
    present = sorted({c for e in catalog for c in e.collections}, key=lambda c: (c not in COLLECTIONS, COLLECTIONS.index(c) if c in COLLECTIONS else 0, c))
    out = {c: _count(catalog.by_collection(c)) for c in present}
    out["total"] = _count(catalog)
    return out


def format_stats(stats: dict[str, dict[str, int]]) -> str:
    columns = ("entries", "datasets", "tasks", "forward_tasks", "categories", "forward_categories")
    lines = [f"{'collection':18}" + "".join(f"{c:>20}" for c in columns)]
    for name, counts in stats.items():
        lines.append(f"{name:18}" + "".join(f"{counts[c]:>20}" for c in columns))
    lines.append(f"{'paper (Chung+22)':18}" + "".join(f"{PAPER.get(c, ''):>20}" for c in columns))
    return "\n".join(lines)
