"""`flanmix mixtures list|show`: a mixture's resolved plan, task by task, before anything runs.

Weights need each task's size: the rows are counted from the source when it can be read (what a
build does in its survey pass), else the task is assumed to fill its cap (marked `assumed`); catalog
entries declare no sizes (schemas/catalog_entry.schema.json). `--no-count` skips reading sources.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping

from pipelines.definitions.catalog import Catalog, DatasetEntry
from pipelines.errors import FlanmixError
from pipelines.definitions.fieldtypes import field_problem
from pipelines.loaders import get_loader
from pipelines.definitions.mixtures import Mixture, default_target, resolve_datasets, resolve_weights, sampling_rate

ASSUMED_WHEN_UNCAPPED = 10_000


@dataclass(frozen=True)
class PlannedTask:
    task: str
    collection: str
    path: str
    cap: int | None
    count: int
    count_source: str  # counted | assumed
    weight: float
    expected_examples: float
    rate: float


def count_rows(entry: DatasetEntry, split: str) -> int:
    loader = get_loader(entry.loader_type)
    shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
    rows = itertools.chain.from_iterable(loader.read(s) for s in shards)
    return sum(1 for r in rows if r.error is None and field_problem(r.fields, entry.fields) is None)


def task_sizes(mixture: Mixture, catalog: Catalog, count: bool) -> tuple[dict, dict, list]:
    """(sizes, how each size is known, [(dataset, reason) skipped])."""
    sizes, sources, skipped = {}, {}, []
    for entry in resolve_datasets(mixture, catalog):
        if count:
            try:
                sizes[entry.name], sources[entry.name] = count_rows(entry, mixture.split), "counted"
                continue
            except FlanmixError as exc:
                skipped.append((entry.name, str(exc).splitlines()[0]))
        sizes[entry.name], sources[entry.name] = entry.default_cap or ASSUMED_WHEN_UNCAPPED, "assumed"
    return sizes, sources, skipped


def plan_mixture(mixture: Mixture, catalog: Catalog, count: bool = True) -> tuple[list[PlannedTask], int, list]:
    sizes, sources, skipped = task_sizes(mixture, catalog, count)
    weights = resolve_weights(mixture, catalog, sizes, set(sizes))
    target = mixture.target_examples or default_target(weights, sizes)
    rows = [
        PlannedTask(
            w.task, w.collection, "/".join(w.path), w.cap, sizes[w.task], sources[w.task], w.weight,
            w.weight * target, sampling_rate(w.weight, sizes[w.task], target, mixture.upsample),
        )
        for w in weights
    ]
    return rows, target, skipped


def format_plan(mixture: Mixture, rows: list[PlannedTask], target: int, skipped: list, verbose: bool = True) -> str:
    """The plan as a table. Without `verbose`, more than 3 unreadable sources are one summary line
    (flan2022 offline has 1,745 of them)."""
    lines = [
        f"mixture {mixture.name}: {len(rows)} tasks, target {target} examples"
        f" ({'given' if mixture.target_examples else 'sum of min(size, cap)'}"
        f"{f'; the build replaces it with {mixture.target_tokens} tokens / measured tokens per example' if mixture.target_tokens else ''}),"
        f" seed {mixture.seed},"
        f" lengths {mixture.inputs_length}/{mixture.targets_length}, upsample {mixture.upsample}",
        f"{'task':52} {'collection':10} {'size':>8} {'cap':>7} {'weight':>9} {'expected':>10} {'rate':>7}",
    ]
    for r in rows:
        size = f"{r.count}{'*' if r.count_source == 'assumed' else ''}"
        lines.append(f"{r.task[:52]:52} {r.collection:10} {size:>8} {r.cap or '-':>7} {r.weight:9.5f} {r.expected_examples:10.1f} {r.rate:7.3f}")
    by_collection: Mapping[str, float] = {}
    for r in rows:
        by_collection[r.collection] = by_collection.get(r.collection, 0.0) + r.weight
    lines.append("collections: " + ", ".join(f"{c} {w:.3f}" for c, w in sorted(by_collection.items())))
    if any(r.count_source == "assumed" for r in rows):
        lines.append("* size unknown (not in the catalog, source not readable here): assumed to fill the cap")
    if skipped and not verbose and len(skipped) > 3:
        name, reason = skipped[0]
        lines.append(f"not readable here: {len(skipped)} datasets, their sizes assumed (e.g. {name}: {reason[:100]}"
                     f"{'...' if len(reason) > 100 else ''}); --verbose lists each with its reason")
    else:
        for name, reason in skipped:
            lines.append(f"not readable here: {name}: {reason}")
    return "\n".join(lines)
