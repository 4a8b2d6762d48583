"""The resolved, validated description of one build. Made on the launcher; shipped to workers.

`make_plan` is where bad input fails before the pipeline starts: an unknown dataset, a missing
template family, a template that does not parse or reads an undeclared field, a source that
cannot be found.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from pipelines.catalog import Catalog, DatasetEntry
from pipelines.errors import TemplateError
from pipelines.lint import lint_static
from pipelines.loaders import SourceShard, get_loader
from pipelines.mixtures import Mixture, resolve_datasets
from pipelines.templates import Template, TemplateFamily
from pipelines.vocab import Vocabulary

SOURCE_BYTES_PER_OUTPUT_SHARD = 256 * 1024 * 1024


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    collection: str
    fields: Mapping[str, str]
    templates: tuple[Template, ...]
    content_sha256: str
    source_path: str


@dataclass(frozen=True)
class BuildPlan:
    mixture: str
    seed: int
    split: str
    inputs_length: int
    targets_length: int
    overlong: str
    num_shards: int
    datasets: Mapping[str, DatasetPlan]
    sources: tuple[SourceShard, ...]
    template_hashes: Mapping[str, str]  # family -> sha256 of its file
    vocab_path: str
    vocab_sha256: str
    vocab_size: int
    layout: str = "encdec"


def _templates_for(entry: DatasetEntry, families: Mapping[str, TemplateFamily]) -> tuple[Template, ...]:
    return tuple(t for fam in entry.templates for t in families[fam].templates)


def make_plan(
    mixture: Mixture,
    catalog: Catalog,
    families: Mapping[str, TemplateFamily],
    vocab: Vocabulary,
    *,
    seed: int | None = None,
    num_shards: int | None = None,
    inputs_length: int | None = None,
    targets_length: int | None = None,
    overlong: str | None = None,
) -> BuildPlan:
    entries = resolve_datasets(mixture, catalog)
    problems = lint_static(entries, families)
    if problems:
        raise TemplateError("templates fail lint; nothing was started:\n  " + "\n  ".join(map(str, problems)))
    sources: list[SourceShard] = []
    for entry in entries:
        loader = get_loader(entry.loader_type)
        sources.extend(loader.plan(entry.name, mixture.split, entry.splits[mixture.split], entry.loader_args))
    if num_shards is None:
        # A function of the inputs only (never of workers): one output shard per 256 MiB of source.
        num_shards = max(1, math.ceil(sum(s.size_bytes for s in sources) / SOURCE_BYTES_PER_OUTPUT_SHARD))
    used_families = sorted({f for e in entries for f in e.templates})
    return BuildPlan(
        mixture=mixture.name,
        seed=mixture.seed if seed is None else seed,
        split=mixture.split,
        inputs_length=inputs_length or mixture.inputs_length,
        targets_length=targets_length or mixture.targets_length,
        overlong=overlong or mixture.overlong,
        num_shards=num_shards,
        datasets={
            e.name: DatasetPlan(e.name, e.collection, dict(e.fields), _templates_for(e, families), e.content_sha256, e.source_path)
            for e in entries
        },
        sources=tuple(sources),
        template_hashes={f: families[f].content_sha256 for f in used_families},
        vocab_path=vocab.path,
        vocab_sha256=vocab.spec.sha256,
        vocab_size=vocab.vocab_size,
    )
