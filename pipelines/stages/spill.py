"""Spill tokenized examples to sorted run files so the shuffle carries file names, not the corpus.

Beam's local FnApiRunner keeps everything that crosses a GroupByKey in the launcher's memory, so
grouping the tokenized examples by output shard would hold the whole corpus (~1.5 KB per example).
Instead `SpillRunsFn` buffers the (shard, items) batches it receives, and whenever the buffer passes
`budget_bytes` (and at the end of each bundle) writes one file under `directory` (the build's staging
prefix, removed when the corpus is published) holding one *run* per output shard: that shard's
buffered items sorted by `sort_key`, pickled in chunks. Only `(shard, Run)` references (file, offset,
length) go through the shuffle; the Pack stage merges a shard's runs (`merge_runs`, a streaming k-way
merge), which yields exactly the order a full sort would. Memory is bounded by the budget on the
writing side and by one chunk per run on the reading side.

Runners with an external shuffle (Dataflow, Flink, Spark) do not need this and would only pay for the
extra files; the build spills on the local runner only (`runner.graph.construct`).

Run names are random (a retried bundle writes new ones; only the runs of the attempt that succeeded
are referenced downstream), the merged order is not: it depends only on the items' sort keys.
"""
from __future__ import annotations

import heapq
import pickle
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from pipelines import counters

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
CHUNK_ITEMS = 1024
RUNS_DIR = "_runs"


@dataclass(frozen=True)
class Run:
    """One output shard's sorted run: `length` bytes at `offset` of a spill file."""

    path: str
    offset: int
    length: int
    items: int


def item_bytes(item) -> int:
    """Approximate size of an item (its bytes and str parts) for the spill budget."""
    return 64 + sum(len(part) for part in item if isinstance(part, (bytes, str)))


def _chunks(items: list, kind: type = list) -> Iterator[bytes]:
    """Pickled chunks of `items`, each a `kind` (a `records.Records` type pickles as columns)."""
    for start in range(0, len(items), CHUNK_ITEMS):
        data = pickle.dumps(kind(items[start:start + CHUNK_ITEMS]), protocol=pickle.HIGHEST_PROTOCOL)
        yield len(data).to_bytes(8, "little") + data


def write_runs(path: str, runs: dict[int, list], kind: type = list) -> dict[int, Run]:
    """Write each shard's already-sorted items, one after the other, into one file."""
    out, offset = {}, 0
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        for shard in sorted(runs):
            length = 0
            for chunk in _chunks(runs[shard], kind):
                handle.write(chunk)
                length += len(chunk)
            out[shard] = Run(path, offset, length, len(runs[shard]))
            offset += length
    return out


def read_run(run: Run) -> Iterator:
    """The items of a run, in order, one chunk in memory at a time."""
    with FileSystems.open(run.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.seek(run.offset)
        left = run.length
        while left > 0:
            size = int.from_bytes(handle.read(8), "little")
            data = handle.read(size)
            if len(data) != size:
                raise IOError(f"spill file {run.path} is truncated")
            left -= 8 + size
            yield from pickle.loads(data)


def merge_runs(runs: Iterable[Run], key: Callable) -> Iterator:
    """All items of the runs in `key` order (each run is sorted by `key`)."""
    return heapq.merge(*(read_run(r) for r in runs), key=key)


class SpillRunsFn(beam.DoFn):
    """(shard, [item, ...]) batches -> (shard, Run) references, see the module docstring."""

    def __init__(self, directory: str, sort_key: Callable, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 size_of: Callable = item_bytes):
        self.directory, self.sort_key, self.budget_bytes = directory, sort_key, budget_bytes
        self.size_of = size_of  # approximate bytes of an item, for the budget (raw rows: stages.exemplars)

    def start_bundle(self):
        self._buffers: dict[int, list] = {}
        self._bytes = 0
        self._kind: type = list

    def process(self, element):
        shard, items = element
        self._kind = type(items)  # the batch type the items came in is the one they are spilled as
        self._buffers.setdefault(shard, []).extend(items)
        self._bytes += sum(self.size_of(i) for i in items)
        if self._bytes >= self.budget_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for shard, run in self._flush():
            yield GlobalWindows.windowed_value((shard, run))

    def _flush(self):
        buffers, self._buffers, self._bytes = self._buffers, {}, 0
        if not buffers:
            return
        path = FileSystems.join(self.directory, RUNS_DIR, f"{uuid.uuid4().hex}.runs")
        runs = write_runs(path, {shard: sorted(items, key=self.sort_key) for shard, items in buffers.items()}, self._kind)
        counters.SPILLED_RUNS.counter().inc(len(runs))
        yield from sorted(runs.items())
