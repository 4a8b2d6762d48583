"""Mixtures: which tasks a corpus is built from, and in what proportions.

A mixture is a YAML file in task_catalog/mixtures/ (schema: schemas/mixture.schema.json). Its members
are datasets, whole collections or other mixtures. A *task* is one catalog entry. Weights follow seqio's
rule, normalised level by level:

- a level where every member has a `rate` splits its share among members in proportion to the rates;
- a level without rates is examples-proportional with a cap: a task weighs min(its examples, cap);
- a collection or sub-mixture member splits its share among its tasks by their capped sizes (or by the
  sub-mixture's own rates).

    >>> resolve_weights(load_mixture("demo"), catalog, counts)   # -> [TaskWeight(task=..., weight=...), ...]

The final weights need each task's example count, which the build measures in the pipeline (a survey
pass) and `flanmix mixtures show` takes from the catalog or by counting.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from pipelines import resources
from pipelines.definitions import safe_yaml
from pipelines.runner import argcheck
from pipelines.definitions.catalog import Catalog, DatasetEntry, with_sample_source
from pipelines.errors import CatalogError
from pipelines.definitions.schema_check import validate

DEFAULT_LENGTHS = {"inputs": 2048, "targets": 512}
PROMPT_SETTINGS = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")


@dataclass(frozen=True)
class FewShotConfig:
    min_exemplars: int = 1
    max_exemplars: int = 5
    pool_size: int = 32
    example_separator: str = "\n\n"
    target_separator: str = "\n"
    group_size: int = 64  # exemplar groups: rows per group (planning.exemplars)
    template_mix: float = 0.5  # share of few-shot prompts whose exemplars mix templates (else the query's)


@dataclass(frozen=True)
class MixtureMember:
    dataset: str | None = None
    collection: str | None = None
    mixture: str | None = None
    rate: float | None = None
    cap: int | None = None


@dataclass(frozen=True)
class Mixture:
    name: str
    members: tuple[MixtureMember, ...]
    seed: int = 0
    split: str = "train"
    data: str = "full"  # "samples": entries read their shipped sample_loader (see resolve_datasets)
    inputs_length: int = DEFAULT_LENGTHS["inputs"]
    targets_length: int = DEFAULT_LENGTHS["targets"]
    overlong: str = "truncate"
    target_examples: int | None = None
    target_tokens: int | None = None
    upsample: bool = True
    prompt_settings: Mapping[str, float] | None = None
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    default_cap: int | None = None
    exclude: tuple[str, ...] = ()
    description: str = ""
    source_path: str = ""
    submixtures: Mapping[str, "Mixture"] = field(default_factory=dict)
    option_marker_answers: float = 0.5  # share of enumerated options blocks answered with the marker


@dataclass(frozen=True)
class TaskWeight:
    """A task's place in a resolved mixture. `weight`s of all tasks sum to 1."""

    task: str
    collection: str
    weight: float
    cap: int | None
    prompt_settings: Mapping[str, float] | None
    path: tuple[str, ...]  # mixture names from the top down to the one that names this task


def mixtures_dir() -> Path:
    return resources.catalog_dir() / "mixtures"


def _path_for(name_or_path: str | Path, base: Path | None = None) -> Path:
    path = Path(name_or_path)
    if path.suffix:
        return path
    for folder in ([base] if base else []) + [mixtures_dir()]:
        candidate = folder / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    return mixtures_dir() / f"{name_or_path}.yaml"


def load_mixture(name_or_path: str | Path, _stack: tuple[str, ...] = ()) -> Mixture:
    """Load and validate a mixture and, recursively, the mixtures it names."""
    path = _path_for(name_or_path, Path(_stack[-1]).parent if _stack else None)
    if not path.is_file():
        known = sorted(p.stem for p in mixtures_dir().glob("*.yaml"))
        raise CatalogError(f"mixture {name_or_path!r} not found (looked for {path}); known mixtures: {known}")
    if str(path.resolve()) in _stack:
        raise CatalogError(f"{path}: mixture includes itself (via {' -> '.join(_stack)})")
    raw = safe_yaml.load_yaml(path.read_bytes(), str(path), CatalogError)
    validate(raw, "mixture.schema.json", path)
    argcheck.check_rates(raw["members"], str(path))  # .nan, .inf, rates whose sum overflows
    members = tuple(
        MixtureMember(m.get("dataset"), m.get("collection"), m.get("mixture"), m.get("rate"), m.get("cap"))
        for m in raw["members"]
    )
    with_rate = [m.rate is not None for m in members]
    if any(with_rate) and not all(with_rate):
        raise CatalogError(f"{path}: either every member has a `rate` or none has (examples-proportional mixing)")
    subs = {
        m.mixture: load_mixture(m.mixture, _stack + (str(path.resolve()),)) for m in members if m.mixture
    }
    lengths = raw.get("sequence_length", DEFAULT_LENGTHS)
    fs = raw.get("few_shot", {})
    few_shot = FewShotConfig(**fs)
    if few_shot.min_exemplars > few_shot.max_exemplars:
        raise CatalogError(f"{path}: few_shot.min_exemplars > few_shot.max_exemplars")
    return Mixture(
        name=raw["name"],
        members=members,
        seed=raw.get("seed", 0),
        split=raw.get("split", "train"),
        data=raw.get("data", "full"),
        inputs_length=lengths["inputs"],
        targets_length=lengths["targets"],
        overlong=raw.get("overlong", "truncate"),
        target_examples=raw.get("target", {}).get("examples"),
        target_tokens=raw.get("target", {}).get("tokens"),
        upsample=raw.get("upsample", True),
        prompt_settings=raw.get("prompt_settings"),
        few_shot=few_shot,
        default_cap=raw.get("default_cap"),
        exclude=tuple(raw.get("exclude", ())),
        description=raw.get("description", ""),
        source_path=str(path),
        submixtures=subs,
        option_marker_answers=raw.get("option_marker_answers", 0.5),
    )


def _member_entries(mixture: Mixture, member: MixtureMember, catalog: Catalog, excluded: set[str]) -> list[DatasetEntry]:
    if member.dataset:
        if member.dataset not in catalog:
            raise CatalogError(f"{mixture.source_path}: member dataset {member.dataset!r} is not in the catalog")
        return [] if member.dataset in excluded else [catalog[member.dataset]]
    entries = [e for e in catalog.by_collection(member.collection) if e.name not in excluded]
    if not entries:
        raise CatalogError(f"{mixture.source_path}: collection {member.collection!r} has no datasets in the catalog")
    return entries


def resolve_datasets(
    mixture: Mixture, catalog: Catalog, _excluded: frozenset = frozenset(), _data: str | None = None
) -> list[DatasetEntry]:
    """Every catalog entry the mixture (and its sub-mixtures) covers, in name order, each once. With
    `data: samples` (set on the top mixture, it holds for its sub-mixtures) each entry reads its
    shipped sample instead of the full source."""
    excluded = set(_excluded) | set(mixture.exclude)
    data = _data or mixture.data
    chosen: dict[str, DatasetEntry] = {}
    for member in mixture.members:
        if member.mixture:
            for e in resolve_datasets(mixture.submixtures[member.mixture], catalog, frozenset(excluded), data):
                chosen[e.name] = e
        else:
            chosen.update(
                (e.name, with_sample_source(e) if data == "samples" else e)
                for e in _member_entries(mixture, member, catalog, excluded)
            )
    for entry in chosen.values():
        if mixture.split not in entry.splits:
            raise CatalogError(f"{entry.source_path}: dataset {entry.name} has no split {mixture.split!r} (has {sorted(entry.splits)})")
    return [chosen[n] for n in sorted(chosen)]


def _capped(n: int, cap: int | None) -> float:
    return float(min(n, cap)) if cap else float(n)


def _resolve_level(
    mixture: Mixture, catalog: Catalog, counts: Mapping[str, int], available: set[str],
    excluded: set[str], path: tuple[str, ...], settings: Mapping[str, float] | None,
) -> list[tuple[list[TaskWeight], float]]:
    """Per member: (its tasks with weights normalised inside the member, the member's raw weight)."""
    settings = mixture.prompt_settings or settings
    out = []
    for member in mixture.members:
        if member.mixture:
            sub = mixture.submixtures[member.mixture]
            tasks = resolve_weights(sub, catalog, counts, available, excluded | set(mixture.exclude), path + (sub.name,), settings)
            size = sum(_capped(counts.get(t.task, 0), t.cap) for t in tasks)
        else:
            tasks = []
            for e in _member_entries(mixture, member, catalog, excluded | set(mixture.exclude)):
                if e.name not in available:
                    continue
                cap = member.cap or mixture.default_cap or e.default_cap
                tasks.append(TaskWeight(e.name, e.collection, _capped(counts.get(e.name, 0), cap), cap, settings, path))
            size = sum(t.weight for t in tasks)
            tasks = [TaskWeight(t.task, t.collection, t.weight / size if size else 0.0, t.cap, t.prompt_settings, t.path) for t in tasks]
        out.append((tasks, member.rate if member.rate is not None else size))
    return out


def resolve_weights(
    mixture: Mixture,
    catalog: Catalog,
    counts: Mapping[str, int],
    available: set[str] | None = None,
    _excluded: set[str] | None = None,
    _path: tuple[str, ...] | None = None,
    _settings: Mapping[str, float] | None = None,
) -> list[TaskWeight]:
    """Every task with its final weight (summing to 1), given each task's example count.

    `available` limits the tasks to those whose source could be loaded (skipped sources drop out
    and the remaining weights are renormalised). Tasks with zero examples get weight 0.
    """
    available = set(counts) if available is None else available
    path = _path or (mixture.name,)
    levels = _resolve_level(mixture, catalog, counts, available, set(_excluded or ()), path, _settings)
    levels = [(tasks, w) for tasks, w in levels if tasks and sum(t.weight for t in tasks) > 0]
    total = sum(w for _, w in levels)
    merged: dict[str, TaskWeight] = {}
    for tasks, member_weight in levels:
        for t in tasks:
            w = t.weight * member_weight / total
            if t.task in merged:  # a task reached through two members: weights add up
                w += merged[t.task].weight
            merged[t.task] = TaskWeight(t.task, t.collection, w, t.cap, t.prompt_settings, t.path)
    return [merged[k] for k in sorted(merged)]


def default_target(weights: list[TaskWeight], counts: Mapping[str, int]) -> int:
    """One 'epoch' of the capped mixture: the sum over tasks of min(examples, cap)."""
    return int(sum(_capped(counts.get(t.task, 0), t.cap) for t in weights))


def sampling_rate(weight: float, count: int, target: int, upsample: bool) -> float:
    """Expected copies of each of a task's rows so the task gets `weight * target` examples."""
    if count <= 0:
        return 0.0
    rate = weight * target / count
    return rate if upsample else min(rate, 1.0)

