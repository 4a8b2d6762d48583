"""Spill tokenized examples to sorted run files so the shuffle carries file names, not the corpus.

Beam's local FnApiRunner keeps everything that crosses a GroupByKey in the launcher's memory, so
grouping the tokenized examples by output shard would hold the whole corpus (~1.5 KB per example).
Instead `SpillRunsFn` buffers the (shard, items) batches it receives, and whenever the buffer passes
`budget_bytes` (and at the end of each bundle) writes, per output shard, one *run*: that shard's
buffered items sorted by `sort_key`, pickled in chunks, under `directory` (the build's staging prefix,
removed when the corpus is published). Only `(shard, Run)` references go through the shuffle; the Pack
stage merges a shard's runs (`merge_runs`, a streaming k-way merge), which yields exactly the order a
full sort would. Memory is bounded by the budget on the writing side and by one chunk per run on the
reading side, on any runner.

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

DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
CHUNK_ITEMS = 1024
RUNS_DIR = "_runs"


@dataclass(frozen=True)
class Run:
    """A sorted run file of one output shard."""

    path: str
    items: int


def item_bytes(item) -> int:
    """Approximate size of an item (its bytes and str parts) for the spill budget."""
    return 64 + sum(len(part) for part in item if isinstance(part, (bytes, str)))


def write_run(path: str, items: list) -> Run:
    """Write already-sorted items as length-prefixed pickled chunks of CHUNK_ITEMS."""
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        for start in range(0, len(items), CHUNK_ITEMS):
            data = pickle.dumps(items[start:start + CHUNK_ITEMS], protocol=pickle.HIGHEST_PROTOCOL)
            handle.write(len(data).to_bytes(8, "little"))
            handle.write(data)
    return Run(path, len(items))


def read_run(run: Run) -> Iterator:
    """The items of a run, in order, one chunk in memory at a time."""
    with FileSystems.open(run.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while header := handle.read(8):
            size = int.from_bytes(header, "little")
            data = handle.read(size)
            if len(data) != size:
                raise IOError(f"run {run.path} is truncated")
            yield from pickle.loads(data)


def merge_runs(runs: Iterable[Run], key: Callable) -> Iterator:
    """All items of the runs in `key` order (each run is sorted by `key`)."""
    return heapq.merge(*(read_run(r) for r in runs), key=key)


class SpillRunsFn(beam.DoFn):
    """(shard, [item, ...]) batches -> (shard, Run) references, see the module docstring."""

    def __init__(self, directory: str, sort_key: Callable, budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.directory, self.sort_key, self.budget_bytes = directory, sort_key, budget_bytes

    def start_bundle(self):
        self._buffers: dict[int, list] = {}
        self._bytes = 0

    def process(self, element):
        shard, items = element
        self._buffers.setdefault(shard, []).extend(items)
        self._bytes += sum(item_bytes(i) for i in items)
        if self._bytes >= self.budget_bytes:
            yield from self._flush()

    def finish_bundle(self):
        for shard, run in self._flush():
            yield GlobalWindows.windowed_value((shard, run))

    def _flush(self):
        buffers, self._buffers, self._bytes = self._buffers, {}, 0
        token = uuid.uuid4().hex
        for shard in sorted(buffers):
            items = sorted(buffers[shard], key=self.sort_key)
            path = FileSystems.join(self.directory, RUNS_DIR, f"{token}-{shard:05d}.run")
            beam.metrics.Metrics.counter("flanmix", "spilled_runs").inc()
            yield shard, write_run(path, items)
