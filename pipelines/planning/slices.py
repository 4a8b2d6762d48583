"""The part of a `BuildPlan` each stage reads, built for it instead of shrinking the plan.

Beam pickles (and bz2-compresses) every DoFn with what it holds: the whole plan of flan2022 built
offline (1,837 catalog entries with fixtures, 1,745 skipped sources with their reasons) made 4.7 MB
and 0.46 s per DoFn. A slice names exactly the fields its stage uses, with the plan's field names, so
a stage's functions accept the slice or the whole plan alike (tests pass plans), and a field a stage
starts to need fails on the first local run, not only on remote workers.

    survey    SurveySlice     sizes and pools, then the SamplingTable (weights need catalog membership)
    exemplars ExemplarSlice   seed, few-shot config (group size), datasets' fields
    render    RenderSlice     seed, few-shot config, datasets (fields, templates), marker-answer share
    tokenize  TokenizeSlice   lengths, overlong policy, shard count, vocabulary identity
    pack      PackSlice       lengths and the packer's buffer
    write     OutputSlice     shard names, layout, format (also FinishCorpus)
    jsonl     TextSlice       shard names, seed and the datasets' collections
    publish   ManifestSlice   what manifest.json records
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

from pipelines.definitions.catalog import Catalog
from pipelines.definitions.mixtures import FewShotConfig, Mixture
from pipelines.definitions.render_budget import RenderBudget
from pipelines.planning.plan import BuildPlan, DatasetPlan


class Slice:
    """A stage's slice: `XSlice.of(plan)` copies the plan's fields of the same names."""

    @classmethod
    def of(cls, plan: BuildPlan):
        return cls(**{f.name: getattr(plan, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Membership:
    """A catalog entry as mixture weights read it (`mixtures.resolve_weights`): name, collections, cap."""

    name: str
    collections: tuple[str, ...]
    default_cap: int | None = None

    @property
    def collection(self) -> str:
        return self.collections[0]


def membership(catalog: Catalog | None) -> Catalog | None:
    """The catalog as the survey's weights read it (`Membership` per entry)."""
    if catalog is None:
        return None
    return Catalog({e.name: Membership(e.name, tuple(e.collections), e.default_cap) for e in catalog})


@dataclass(frozen=True)
class SurveySlice(Slice):
    seed: int
    pool_size: int
    exemplar_groups: bool  # weights.side_input_pools: grouped tasks' pools stay off the side input
    datasets: Mapping[str, DatasetPlan]
    mixture_spec: Mixture | None
    catalog: Catalog | None  # of Membership: what resolves mixture members to datasets
    target_examples: int | None
    target_tokens: int | None
    upsample: bool
    few_shot: FewShotConfig
    layout: str
    inputs_length: int
    targets_length: int
    decoder_length: int
    vocab_path: str
    vocab_sha256: str
    render_budget: RenderBudget

    @classmethod
    def of(cls, plan: BuildPlan) -> SurveySlice:
        return cls(**{f.name: membership(plan.catalog) if f.name == "catalog" else getattr(plan, f.name)
                      for f in fields(cls)})


@dataclass(frozen=True)
class RenderSlice(Slice):
    seed: int
    few_shot: FewShotConfig
    datasets: Mapping[str, DatasetPlan]
    render_budget: RenderBudget
    option_marker_answers: float


@dataclass(frozen=True)
class ExemplarSlice(Slice):
    """GroupExemplars (stages.exemplars): which rows go to which exemplar group."""

    seed: int
    few_shot: FewShotConfig
    datasets: Mapping[str, DatasetPlan]


@dataclass(frozen=True)
class TokenizeSlice(Slice):
    seed: int
    num_shards: int
    layout: str
    inputs_length: int
    targets_length: int
    decoder_length: int
    overlong: str
    few_shot: FewShotConfig
    vocab_path: str
    vocab_sha256: str


@dataclass(frozen=True)
class PackSlice(Slice):
    layout: str
    inputs_length: int
    targets_length: int
    decoder_length: int
    pack_buffer: int


@dataclass(frozen=True)
class OutputSlice(Slice):
    mixture: str
    split: str
    num_shards: int
    layout: str
    output_format: str
    max_dead_letter_fraction: float | None  # FinishCorpus applies the dead-letter policy
    dead_letter_shards: int  # FinishCorpus completes the dead-letter series
    inputs_length: int  # the data card's row-fill histograms (publish/card_stats.py)
    targets_length: int
    decoder_length: int
    file_formats: tuple[str, ...]  # which packed files WriteCorpus writes (formats/file_formats.py)


@dataclass(frozen=True)
class TextSlice(Slice):
    mixture: str
    split: str
    num_shards: int
    seed: int
    few_shot: FewShotConfig
    datasets: Mapping[str, DatasetPlan]


@dataclass(frozen=True)
class ManifestSlice(Slice):
    mixture: str
    split: str
    seed: int
    inputs_length: int
    targets_length: int
    decoder_length: int
    layout: str
    output_format: str
    overlong: str
    num_shards: int
    vocab_path: str
    vocab_sha256: str
    vocab_size: int
    vocab_whitespace: str
    datasets: Mapping[str, DatasetPlan]
    template_hashes: Mapping[str, str]
    skipped: tuple[tuple[str, str], ...]
    upsample: bool
    few_shot: FewShotConfig
    pool_size: int
    option_marker_answers: float
    exemplar_groups: bool
    file_formats: tuple[str, ...]
    sources_snapshot: Mapping[str, str] | None = None


def run_identity(plan: BuildPlan) -> tuple:
    """What names a build's staging prefix (`publish.commit.run_id`): what its manifest records and
    the sources it reads."""
    return ManifestSlice.of(plan), plan.sources
