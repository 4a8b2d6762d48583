"""The loader contract: plan source shards on the launcher, read them on workers.

A loader turns one catalog entry + split into `SourceShard`s (cheap, launcher side: this is where a
missing file fails, before the pipeline starts) and reads a shard into `RawRow`s (worker side).
Every row has a stable `row_id`, so choices keyed on it are identical on every runner.
A row the loader cannot parse is not dropped: it comes back with `error` set and goes to the
dead-letter output.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol


@dataclass(frozen=True)
class SourceShard:
    """A unit of parallel reading: one file (or file range) of one dataset split."""

    dataset: str
    split: str
    loader_type: str
    args: Mapping[str, Any] = field(default_factory=dict)
    index: int = 0
    size_bytes: int = 0  # for planning the number of output shards; 0 if unknown


@dataclass(frozen=True)
class RawRow:
    row_id: str
    fields: Mapping[str, Any] | None
    error: str | None = None
    raw: str | None = None  # the unparsed text, kept for the dead-letter record


class Loader(Protocol):
    """What every loader implements (see `pipelines.loaders.LOADERS`)."""

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        """Check the source is reachable and list its shards; raise LoaderError saying how to get it."""
        ...

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        ...
