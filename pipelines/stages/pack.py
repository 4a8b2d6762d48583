"""Pack: (shard, [ShardItem]) batches -> one (shard, grouped batches) element per output shard, and
`pack_shard`, which turns that element into the shard's packed rows.

Groups a shard's items (through the shuffle, or through sorted run files, `stages.spill`); `pack_shard`
fixes their order by (order hash, provenance) and packs them into rows (`formats.rows.pack_batches`),
lazily: the write stage (`stages.write`) drives it, so each batch of rows goes into the shard's files
as soon as it is packed and a worker never holds a whole shard's examples or rows (memory flat in
the shard's size). A lazy generator cannot cross a Beam step, which is why the packing runs inside
the write stage's DoFn rather than in a DoFn of its own.
"""
from __future__ import annotations

import heapq
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np

from pipelines.formats.rows import PackedBatch, TokenizedExample, pack_batches
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import PackSlice
from pipelines import counters
from pipelines.records import ShardItem
from pipelines.stages import spill


def shard_order_key(item: ShardItem) -> tuple:
    """(order hash, provenance): a total order of a shard's items."""
    return item.order, item.provenance


def order_shard(batches: Iterable) -> Iterator[TokenizedExample]:
    """The deterministic order of one shard's examples, whatever order the batches arrived in, one
    at a time. A batch is a list of ShardItems (sorted here, in memory: the runners that shuffle
    without spilling) or a `spill.Run` (items spilled to a sorted file, merged a chunk at a time)."""
    items, runs = [], []
    for batch in batches:
        if isinstance(batch, spill.Run):
            runs.append(batch)
        else:
            items.extend(batch)
    items.sort(key=shard_order_key)
    merged = heapq.merge(items, spill.merge_runs(runs, shard_order_key), key=shard_order_key) if runs else items
    for item in merged:
        yield TokenizedExample(np.frombuffer(item.inputs, np.int32), np.frombuffer(item.targets, np.int32), item.provenance)


def pack_shard(grouped: Iterable, plan: PackSlice | BuildPlan) -> Iterator[PackedBatch]:
    """One shard's packed rows, a batch at a time, from its grouped items (a `Pack` element's value)."""
    packed = counters.PACKED_ROWS.counter()
    for batch in pack_batches(order_shard(grouped), plan.layout, plan.inputs_length, plan.targets_length,
                              plan.decoder_length, buffer_size=plan.pack_buffer):
        packed.inc(len(batch))
        yield batch


class Pack(beam.PTransform):
    """(shard, items) batches -> (shard, grouped batches), one element per shard that has examples;
    `WriteCorpus` packs each with `pack_shard` as it writes. Shards that receive no examples get no
    element here; `finish_corpus` writes their (empty) files once the job knows which they are. `spill_dir`: spill the examples to sorted run files there (`stages.spill`) so the shuffle
    carries only file references; None keeps them in the shuffle."""

    def __init__(self, plan: BuildPlan, spill_dir: str | None = None):
        super().__init__()
        self.plan, self.spill_dir = plan, spill_dir

    def expand(self, keyed_examples):
        if self.spill_dir is not None:
            keyed_examples = keyed_examples | "SpillRuns" >> beam.ParDo(spill.SpillRunsFn(self.spill_dir, shard_order_key))
        return keyed_examples | "GroupByShard" >> beam.GroupByKey()
