"""The records that travel between the build's stages, by name (glossary: README, "How a build works").

    ReadSources      -> (dataset, [RawRow])              loaders.base.RawRow: one source row
    RenderTemplates  -> (dataset, RenderedBatch)         RenderedExamples: a prompt and its target, as text
    Tokenize         -> (shard, ShardItems)              ShardItems: an example's token ids and its place
    Pack             -> (shard, grouped ShardItems)      a shard's items (or spilled runs), packed as written
    WriteCorpus, ... -> Report                           counts and written files; merged once
                                                         (WriteCorpus packs them: formats.rows.PackedBatch, rows as
                                                         columns, 1,024 rows at a time)

A stage that drops something sends a dead-letter record (`dead_letter`) on its DEAD_LETTER output
(written in shards by `stages.dead_letters`);
every stage sends what it counted (`pipelines.counters`) as a Report on its STATS output.

Records are NamedTuples and travel in batches (`Records`: a list that pickles as columns). Beam's
coder pickles any type it does not know, one record at a time, and a list of NamedTuples pickles at
a third of the speed of a list of tuples; a batch of columns pickles as fast as the tuples did, and
smaller (`python benchmarks/records.py`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from pipelines.formats.writers import WrittenFile

DEAD_LETTER = "dead_letter"  # tagged output of a stage's dropped rows / examples
STATS = "stats"  # tagged output of a stage's Report
BATCH_SIZE = 512  # source rows per batch: templates render and SentencePiece encodes lists


class RenderedExample(NamedTuple):
    """One rendered example (a copy of a source row) as RenderTemplates emits it."""

    template_id: str
    key: str  # the copy's identity: the row id, `row_id#N` for repeats (`sampling.copy_key`)
    setting: str  # prompt setting, e.g. "fs_noopt"
    inputs: str  # the query, without exemplars
    targets: str
    # rendered exemplars ("inputs + separator + targets"), joined later: a tuple of them (the survey
    # pool's), or a planning.exemplars.FewShotPrompt (exemplars from the row's group, with the task's
    # separator and a lead stated once)
    shots: tuple


class ShardItem(NamedTuple):
    """One tokenized example bound for one output shard, as Tokenize emits it."""

    order: int  # its place in the shard (a keyed hash; ties broken by provenance)
    inputs: bytes  # int32 token ids, ending with EOS
    targets: bytes
    provenance: str  # "dataset|template_id|prompt_setting|key"


class TextItem(NamedTuple):
    """One example of a `--format jsonl` build bound for one output shard."""

    order: int
    id: str  # the same string as a packed example's provenance
    line: str  # one JSON line, newline-terminated


class Records(list):
    """A list of records of one NamedTuple type (`record`) that pickles as one tuple per field."""

    __slots__ = ()
    record: ClassVar[type]

    def __reduce__(self):
        return _rebuild, (type(self), tuple(zip(*self)))


def _rebuild(cls: type[Records], columns: tuple) -> Records:
    return cls(map(tuple.__new__, itertools.repeat(cls.record), zip(*columns)))


class RenderedBatch(Records):
    __slots__ = ()
    record = RenderedExample


class ShardItems(Records):
    __slots__ = ()
    record = ShardItem


class TextItems(Records):
    __slots__ = ()
    record = TextItem


# Calling a NamedTuple class runs a Python-level __new__ (about 0.5 us a record, 0.5% of a build's
# time per record type); the per-example loops build the same objects with `new(Record, (fields...))`.
new = tuple.__new__


def provenance(dataset: str, template_id: str, setting: str, key: str) -> str:
    """The id of an example in every output: `dataset|template_id|prompt_setting|key`."""
    return f"{dataset}|{template_id}|{setting}|{key}"


def dead_letter(dataset: str, row_id: str, stage: str, reason: str, raw: str | None = None) -> dict:
    """A dead-letter record: a JSON object of dead_letter/ (sorted keys), so a plain dict."""
    record = {"dataset": dataset, "row_id": row_id, "stage": stage, "reason": reason}
    if raw is not None:
        record["raw"] = raw
    return record


def dead_letter_key(record: dict) -> tuple:
    return record["dataset"], record["row_id"], record["stage"]


@dataclass(frozen=True)
class Report:
    """What a stage counted (`counters` keys -> int) and the files it wrote. Merged by
    `stages.finish.MergeReports` (no driver-side collection)."""

    counts: dict = field(default_factory=dict)  # counters.Counter.key(...) -> int
    files: tuple[WrittenFile, ...] = ()
