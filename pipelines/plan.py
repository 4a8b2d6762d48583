"""The resolved, validated description of one build. Made on the launcher; shipped to workers.

`make_plan` is where bad input fails before the pipeline starts: an unknown dataset, a missing
template family, a template that does not parse or reads an undeclared field. A source that cannot
be loaded is skipped (listed in the plan, the manifest and the summary; the other tasks' weights are
renormalised) unless `strict=True`, which makes it fatal.
"""
from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass
from typing import Mapping

from pipelines.catalog import Catalog, DatasetEntry
from pipelines.errors import CatalogError, FlanmixError, LoaderError, TemplateError
from pipelines.lint import lint_static
from pipelines.loaders import SourceShard, get_loader
from pipelines.mixtures import FewShotConfig, Mixture, resolve_datasets
from pipelines.packing import DEFAULT_BUFFER_SIZE, LAYOUTS
from pipelines.templates import Template, TemplateFamily, bind_templates
from pipelines.vocab import Vocabulary

# One output shard per 64 MiB of source: ~60k Flan-like examples, a ~100 MB TFRecord shard, and what
# one worker holds while packing and writing a shard (~12 KB per example; benchmarks/scale.py).
SOURCE_BYTES_PER_OUTPUT_SHARD = 64 * 1024 * 1024


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
    mixture_spec: Mixture | None = None  # the loaded mixture tree, for weights once sizes are known
    catalog: Catalog | None = None  # the entries this build uses (collections resolve against it)
    target_examples: int | None = None
    target_tokens: int | None = None  # turned into examples once tokens per example are measured
    upsample: bool = True
    pool_size: int = 0  # exemplar candidates kept per task; 0 when no few-shot setting is wanted
    few_shot: FewShotConfig = FewShotConfig()
    skipped: tuple[tuple[str, str], ...] = ()  # (dataset, reason) of sources that could not be loaded
    decoder_length: int = 0  # layout "decoder": the row length (make_plan: inputs_length + targets_length)
    output_format: str = "packed"  # "packed": TFRecord + Parquet rows; "jsonl": rendered text, unpacked
    pack_buffer: int = DEFAULT_BUFFER_SIZE  # examples the packer sorts and places at a time (bounds memory)


def membership_only(entry: DatasetEntry) -> DatasetEntry:
    """The entry as mixture weights see it (`mixtures.resolve_weights`: name, collections, cap),
    without what only the launcher reads (loaders, fields, templates, fixtures, prose)."""
    return dataclasses.replace(
        entry, task_categories=(), languages=(), loader_type="", loader_args={}, splits={}, fields={}, templates=(),
        source_path="", content_sha256="", license="", description="", source_dataset="", info_source="",
        inversion_categories=(), template_vars={}, fixtures=(), notes="", sample_loader_type="", sample_loader_args={},
    )


def for_workers(plan: BuildPlan, keep_skipped: bool = False) -> BuildPlan:
    """The plan the job's DoFns carry. Beam pickles and bz2-compresses every DoFn with its plan: the
    full plan of flan2022 built offline (1,837 catalog entries with fixtures, 1,745 skipped sources
    with their reasons) made that 4.7 MB and 0.46 s per DoFn. Workers consult the catalog only to
    resolve mixture members to datasets, and only the manifest (`keep_skipped`) lists the skips."""
    catalog = None if plan.catalog is None else Catalog({e.name: membership_only(e) for e in plan.catalog})
    return dataclasses.replace(plan, catalog=catalog, skipped=plan.skipped if keep_skipped else ())


def _templates_for(entry: DatasetEntry, families: Mapping[str, TemplateFamily]) -> tuple[Template, ...]:
    return bind_templates(entry.templates, families, entry.template_vars)


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
    target_examples: int | None = None,
    strict: bool = False,
    target_tokens: int | None = None,
    layout: str = "encdec",
    decoder_length: int | None = None,
    output_format: str = "packed",
    pack_buffer: int | None = None,
) -> BuildPlan:
    _check_output_options(layout, output_format, decoder_length, pack_buffer)
    entries = all_entries = resolve_datasets(mixture, catalog)
    problems = lint_static(entries, families)
    if problems:
        raise TemplateError("templates fail lint; nothing was started:\n  " + "\n  ".join(map(str, problems)))
    sources: list[SourceShard] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        try:
            loader = get_loader(entry.loader_type)
            sources.extend(loader.plan(entry.name, mixture.split, entry.splits[mixture.split], entry.loader_args))
        except LoaderError as exc:
            if strict:
                raise LoaderError(f"--strict: a source of mixture {mixture.name} cannot be loaded: {exc}") from None
            skipped.append((entry.name, str(exc)))
    skipped_names = {name for name, _ in skipped}
    entries = [e for e in entries if e.name not in skipped_names]
    if not entries:
        raise CatalogError(
            f"mixture {mixture.name}: no source can be loaded, nothing to build. Skipped:\n  "
            + "\n  ".join(f"{n}: {r}" for n, r in skipped)
        )
    if num_shards is None:
        # A function of the inputs only (never of workers): one output shard per 64 MiB of source.
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
        mixture_spec=mixture,
        catalog=Catalog({e.name: e for e in all_entries}),
        target_examples=target_examples or (None if target_tokens else mixture.target_examples),
        target_tokens=None if target_examples else (target_tokens or mixture.target_tokens),
        upsample=mixture.upsample,
        # The pool doubles as the sample that measures tokens per example for a token target.
        pool_size=mixture.few_shot.pool_size if wants_few_shot(mixture) or target_tokens or mixture.target_tokens else 0,
        few_shot=mixture.few_shot,
        skipped=tuple(skipped),
        layout=layout,
        decoder_length=(decoder_length or (inputs_length or mixture.inputs_length) + (targets_length or mixture.targets_length))
        if layout == "decoder" else 0,
        output_format=output_format,
        pack_buffer=pack_buffer or DEFAULT_BUFFER_SIZE,
    )


OUTPUT_FORMATS = ("packed", "jsonl")


def _check_output_options(layout: str, output_format: str, decoder_length: int | None, pack_buffer: int | None) -> None:
    if layout not in LAYOUTS:
        raise FlanmixError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if output_format not in OUTPUT_FORMATS:
        raise FlanmixError(f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    if decoder_length is not None and (layout != "decoder" or decoder_length < 2):
        raise FlanmixError(f"decoder_length {decoder_length} needs layout 'decoder' and at least 2 tokens")
    if pack_buffer is not None and pack_buffer < 1:
        raise FlanmixError(f"pack_buffer must be at least 1 (got {pack_buffer})")


def wants_few_shot(mixture: Mixture) -> bool:
    """Whether any level of the mixture asks for a few-shot prompt setting."""
    own = any(p > 0 for s, p in (mixture.prompt_settings or {}).items() if s.startswith("fs"))
    return own or any(wants_few_shot(sub) for sub in mixture.submixtures.values())
