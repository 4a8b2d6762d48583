"""Per-row decisions of a build, each a pure function of keyed hashes (see `hashing`):

- how many copies of a row enter the corpus (down- and upsampling to the mixture's proportions);
- which prompt setting (zs/fs x opt/noopt) and template each copy gets;
- which exemplars a few-shot copy shows (rows of the same task, never the row itself).

Nothing depends on runner, workers or bundle order, so reruns are identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from pipelines.planning.hashing import keyed_choice, keyed_hash
from pipelines.definitions.mixtures import FewShotConfig
from pipelines.definitions.templates import Template

_TWO_64 = float(2**64)


@dataclass(frozen=True)
class TaskSampling:
    """How one task is sampled in a build (made in the pipeline once its size is known)."""

    task: str
    collection: str
    weight: float  # target share of the corpus
    count: int  # rows available
    rate: float  # expected copies per row
    settings: tuple[tuple[str, float], ...]  # prompt setting -> probability; () = uniform over templates
    path: tuple[str, ...] = ()
    cap: int | None = None


@dataclass(frozen=True)
class SamplingTable:
    target: int
    tasks: Mapping[str, TaskSampling]
    pools: Mapping[str, tuple[tuple[str, Mapping], ...]]  # task -> exemplar candidates (row_id, fields)
    target_tokens: int | None = None  # set when the mixture asked for tokens; `target` is then derived
    tokens_per_example: Mapping[str, float] | None = None  # measured on each task's pool


@dataclass(frozen=True)
class Variant:
    template: Template
    setting: str
    exemplars: tuple[tuple[str, Mapping], ...] = ()


def copies(rate: float, seed: int, task: str, row_id: str) -> int:
    """floor(rate) copies plus one more with probability frac(rate), decided by a keyed hash."""
    whole = int(rate)
    frac = rate - whole
    if frac <= 0.0:
        return whole
    u = keyed_hash(seed, "sample", task, row_id) / _TWO_64
    return whole + (1 if u < frac else 0)


def copy_key(row_id: str, copy: int) -> str:
    """The identity of one copy: the row id for the first, `row_id#N` for repeats."""
    return row_id if copy == 0 else f"{row_id}#{copy}"


def templates_for_setting(templates: Sequence[Template], setting: str, pool_size: int) -> list[Template]:
    """Candidates for a setting. Few-shot settings use few-shot templates, and zero-shot templates in
    their generated few-shot form when the task has at least two exemplar candidates."""
    shots, opt = setting.split("_")
    options = opt == "opt"
    same_opt = [t for t in templates if t.options == options]
    if shots == "zs":
        return [t for t in same_opt if t.shots == "zero_shot"]
    own = [t for t in same_opt if t.shots == "few_shot"]
    generated = [t for t in same_opt if t.shots == "zero_shot"] if pool_size >= 2 else []
    return own + generated


def supported_settings(templates: Sequence[Template], wanted: Mapping[str, float], pool_size: int) -> tuple[tuple[str, float], ...]:
    """The wanted settings this task can realise, renormalised to sum to 1."""
    ok = [(s, p) for s, p in sorted(wanted.items()) if p > 0 and templates_for_setting(templates, s, pool_size)]
    total = sum(p for _, p in ok)
    return tuple((s, p / total) for s, p in ok) if total else ()


def choose_variant(
    templates: Sequence[Template],
    settings: Sequence[tuple[str, float]],
    pool: Sequence[tuple[str, Mapping]],
    few_shot: FewShotConfig,
    seed: int,
    task: str,
    row_id: str,
    key: str,
    setting: str | None = None,
) -> Variant:
    """Pick setting, template and exemplars for one copy (`key`) of row `row_id`. `setting` forces
    the prompt setting (the token estimate uses it to average over settings)."""
    if not settings:
        t = templates[keyed_choice(len(templates), seed, "template", task, key)]
        return Variant(t, t.prompt_setting)
    if setting is None:
        u = keyed_hash(seed, "setting", task, key) / _TWO_64
        setting = settings[-1][0]
        acc = 0.0
        for name, p in settings:
            acc += p
            if u < acc:
                setting = name
                break
    candidates = templates_for_setting(templates, setting, len(pool))
    t = candidates[keyed_choice(len(candidates), seed, "template", task, key)]
    if setting.startswith("zs") or t.shots == "few_shot":
        return Variant(t, setting)
    span = few_shot.max_exemplars - few_shot.min_exemplars + 1
    k = few_shot.min_exemplars + keyed_choice(span, seed, "k", task, key)
    others = [row for row in pool if row[0] != row_id]
    others.sort(key=lambda row: keyed_hash(seed, "exemplar", task, key, row[0]))
    return Variant(t, setting, tuple(others[:k]))
