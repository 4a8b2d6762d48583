"""The resolved, validated description of one build. Made on the launcher from a mixture, the catalog
and `BuildOptions`; each stage's DoFns get the slice of it that stage reads (`planning.slices`).

`make_plan` is where bad input fails before the pipeline starts: an unknown dataset, a missing
template family, a template that does not parse or reads an undeclared field. A source that cannot
be loaded is skipped (listed in the plan, the manifest and the summary; the other tasks' weights are
renormalised) unless `strict=True`, which makes it fatal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from pipelines.stages import dead_letter_policy
from pipelines.definitions.catalog import Catalog, DatasetEntry
from pipelines.errors import CatalogError, FlanmixError, LoaderError, TemplateError
from pipelines.definitions.lint import lint_static
from pipelines.loaders import SourceShard, get_loader
from pipelines.definitions.mixtures import FewShotConfig, Mixture, resolve_datasets
from flanmix_corpus.layouts import LAYOUTS
from pipelines.formats.file_formats import DEFAULT_FORMATS, parse_formats
from pipelines.formats.packer import DEFAULT_BUFFER_SIZE
from pipelines.definitions.templates import Template, TemplateFamily, bind_templates
from pipelines.definitions.render_budget import RenderBudget
from pipelines.planning import shard_count
from pipelines.vocab import Vocabulary


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    collection: str
    fields: Mapping[str, str]
    templates: tuple[Template, ...]
    content_sha256: str
    source_path: str
    # what the data card says about the source (catalog entry): licence, languages, task categories
    license: str = ""
    languages: tuple[str, ...] = ()
    task_categories: tuple[str, ...] = ()


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
    render_budget: RenderBudget = RenderBudget()  # per-row render limits (render_budget.py); workers configure it
    max_dead_letter_fraction: float | None = None  # dead_letter_policy.py; None: fail when a dataset loses all
    vocab_whitespace: str = "kept"  # Vocabulary.whitespace: "kept" or "collapsed" (T5's vocabularies)
    # Few-shot exemplars from the whole split (stages.exemplars): on when a few-shot setting is wanted.
    exemplar_groups: bool = False
    option_marker_answers: float = 0.5  # planning.option_formats: share of enumerated blocks answered by marker
    sources_snapshot: Mapping[str, str] | None = None  # {"sha256": ...} of the snapshot read (--sources), else None
    dead_letter_shards: int = 1  # files of dead_letter/ (planning.shard_count.dead_letter_shards)
    file_formats: tuple[str, ...] = DEFAULT_FORMATS  # packed output: formats/file_formats.py (`--formats`)
    cache_dir: str = ""  # pipelines/cache: where tokenized examples per source file are kept; "" = no cache


def _option(help_text: str, **kwargs):
    return field(metadata={"help": help_text}, **kwargs)


@dataclass(frozen=True)
class BuildOptions:
    """What a build sets beyond its mixture file (the flags of `flanmix build`). None: the mixture's
    value, or the rule in the help text."""

    seed: int | None = _option("seed of every keyed choice", default=None)
    num_shards: int | None = _option("output shards (default: one per 64 MiB of expected output, planning/shard_count.py)",
                                     default=None)
    inputs_length: int | None = _option("inputs tokens per packed row", default=None)
    targets_length: int | None = _option("targets tokens per packed row", default=None)
    overlong: str | None = _option("truncate | drop an example longer than the lengths", default=None)
    target_examples: int | None = _option("corpus size in examples", default=None)
    target_tokens: int | None = _option("corpus size in tokens (inputs + targets with EOS)", default=None)
    strict: bool = _option("fail when any source cannot be loaded, instead of skipping it", default=False)
    layout: str = _option("encdec | decoder", default="encdec")
    decoder_length: int | None = _option("decoder row length (default inputs_length + targets_length)", default=None)
    output_format: str = _option("packed (TFRecord + Parquet) | jsonl (rendered text)", default="packed")
    pack_buffer: int | None = _option("examples the packer sorts and places at a time", default=None)
    render_budget: RenderBudget | None = _option("per-row render limits (definitions/render_budget.py)", default=None)
    max_dead_letter_fraction: float | None = _option(
        "fail when more than this share of a dataset's (or all) rows are dead letters; None: when a dataset loses all",
        default=None)
    sources: str | None = _option("read every source from this snapshot (pipelines/sources), not its loader", default=None)
    file_formats: str | tuple[str, ...] | None = _option("packed output files: tfrecord,parquet (default both)", default=None)
    cache: str | None = _option("cache folder (local, gs://, s3://) of tokenized examples per source file (pipelines/cache)",
                                default=None)


def _templates_for(entry: DatasetEntry, families: Mapping[str, TemplateFamily]) -> tuple[Template, ...]:
    return bind_templates(entry.templates, families, entry.template_vars)


def make_plan(
    mixture: Mixture,
    catalog: Catalog,
    families: Mapping[str, TemplateFamily],
    vocab: Vocabulary,
    options: BuildOptions = BuildOptions(),
) -> BuildPlan:
    o = options
    seed, num_shards, inputs_length, targets_length = o.seed, o.num_shards, o.inputs_length, o.targets_length
    overlong, target_examples, target_tokens, strict = o.overlong, o.target_examples, o.target_tokens, o.strict
    layout, decoder_length, output_format, pack_buffer = o.layout, o.decoder_length, o.output_format, o.pack_buffer
    _check_output_options(layout, output_format, decoder_length, pack_buffer)
    file_formats = parse_formats(o.file_formats)
    if output_format == "jsonl" and o.file_formats is not None and file_formats != DEFAULT_FORMATS:
        raise FlanmixError("--formats chooses the packed output's files; --format jsonl writes jsonl/ only")
    if o.cache and output_format != "packed":
        raise FlanmixError(f"--cache keeps tokenized examples; it applies to packed builds, not --format {output_format}")
    entries = all_entries = resolve_datasets(mixture, catalog)
    problems = lint_static(entries, families)
    if problems:
        raise TemplateError("templates fail lint; nothing was started:\n  " + "\n  ".join(map(str, problems)))
    sources: list[SourceShard] = []
    skipped: list[tuple[str, str]] = []
    snapshot = present = None
    if o.sources:  # every source from a snapshot (pipelines/sources): no Hub, TFDS or source files
        from pipelines.sources import loader as snapshot_loader
        from pipelines.sources.manifest import load as load_snapshot

        snapshot = load_snapshot(o.sources)
        present = snapshot_loader.listing(snapshot)
    for entry in entries:
        try:
            if snapshot is not None:
                sources.extend(snapshot_loader.plan_entry(snapshot, entry, mixture.split, present))
                continue
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
    final_examples = target_examples or (None if target_tokens else mixture.target_examples)
    final_tokens = None if target_examples else (target_tokens or mixture.target_tokens)
    if num_shards is None:
        # A function of the inputs only (never of workers): one output shard per 64 MiB of expected output.
        num_shards = shard_count.output_shards(mixture, catalog, sources, {e.name for e in entries},
                                               final_examples, final_tokens, mixture.upsample)
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
            e.name: DatasetPlan(e.name, e.collection, dict(e.fields), _templates_for(e, families), e.content_sha256,
                                e.source_path, e.license, tuple(e.languages), tuple(e.task_categories))
            for e in entries
        },
        sources=tuple(sources),
        template_hashes={f: families[f].content_sha256 for f in used_families},
        vocab_path=vocab.path,
        vocab_sha256=vocab.spec.sha256,
        vocab_size=vocab.vocab_size,
        vocab_whitespace=vocab.whitespace,
        mixture_spec=mixture,
        catalog=Catalog({e.name: e for e in all_entries}),
        target_examples=final_examples,
        target_tokens=final_tokens,
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
        render_budget=o.render_budget or RenderBudget(),
        max_dead_letter_fraction=dead_letter_policy.validate(o.max_dead_letter_fraction),
        exemplar_groups=wants_few_shot(mixture),
        option_marker_answers=mixture.option_marker_answers,
        sources_snapshot={"sha256": snapshot.sha256} if snapshot is not None else None,
        dead_letter_shards=shard_count.dead_letter_shards(sources),
        file_formats=file_formats,
        cache_dir=o.cache or "",
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
