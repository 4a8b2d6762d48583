"""Pack: (shard, [ShardItem]) batches -> (shard, [PackedBatch]) per output shard.

Groups a shard's items (through the shuffle, or through sorted run files, `stages.spill`), fixes
their order by (order hash, provenance) and packs them into rows (`formats.rows.pack_batches`).
"""
from __future__ import annotations

import heapq
from typing import Iterable

import apache_beam as beam
import numpy as np

from pipelines.formats.rows import TokenizedExample, pack_batches
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import PackSlice
from pipelines import counters
from pipelines.records import ShardItem
from pipelines.stages import spill


def shard_order_key(item: ShardItem) -> tuple:
    """(order hash, provenance): a total order of a shard's items."""
    return item.order, item.provenance


def order_shard(batches: Iterable) -> list[TokenizedExample]:
    """The deterministic order of one shard's examples, whatever order the batches arrived in.
    A batch is a list of ShardItems or a `spill.Run` (items spilled to a sorted file, merged here)."""
    items, runs = [], []
    for batch in batches:
        if isinstance(batch, spill.Run):
            runs.append(batch)
        else:
            items.extend(batch)
    items.sort(key=shard_order_key)
    merged = heapq.merge(items, spill.merge_runs(runs, shard_order_key), key=shard_order_key) if runs else items
    return [
        TokenizedExample(np.frombuffer(item.inputs, np.int32), np.frombuffer(item.targets, np.int32), item.provenance)
        for item in merged
    ]


class PackShardFn(beam.DoFn):
    def __init__(self, plan: PackSlice | BuildPlan):
        self.plan = plan

    def process(self, element):
        shard, batches = element
        examples = order_shard(batches)
        plan = self.plan
        batches = list(pack_batches(examples, plan.layout, plan.inputs_length, plan.targets_length,
                                    plan.decoder_length, buffer_size=plan.pack_buffer))
        counters.PACKED_ROWS.counter().inc(sum(len(b) for b in batches))
        yield shard, batches


class Pack(beam.PTransform):
    """Shards that receive no examples get no element here; `finish_corpus` writes their (empty)
    files once the job knows which they are. `spill_dir`: spill the examples to sorted run files there (`stages.spill`) so the shuffle
    carries only file references; None keeps them in the shuffle."""

    def __init__(self, plan: BuildPlan, spill_dir: str | None = None):
        super().__init__()
        self.plan, self.spill_dir = plan, spill_dir

    def expand(self, keyed_examples):
        if self.spill_dir is not None:
            keyed_examples = keyed_examples | "SpillRuns" >> beam.ParDo(spill.SpillRunsFn(self.spill_dir, shard_order_key))
        return (
            keyed_examples
            | "GroupByShard" >> beam.GroupByKey()
            | "PackShard" >> beam.ParDo(PackShardFn(PackSlice.of(self.plan)))
        )
