"""ReadSources: source shards -> (dataset, [RawRow]) batches, plus a Report of the rows read per dataset.

    sources | ReadSources()  ->  .rows (batches of BATCH_SIZE rows), [STATS] (Report)

A row the loader could not parse still travels, with its `error` set; RenderTemplates dead-letters it.
"""
from __future__ import annotations

from typing import Iterator

import apache_beam as beam

from pipelines.loaders import SourceShard, get_loader, records
from pipelines import counters
from pipelines.records import BATCH_SIZE, STATS, Report


def read_shard_batches(shard: SourceShard, batch_size: int = BATCH_SIZE) -> Iterator:
    """(dataset, [RawRow]) batches, then one Report with the rows read."""
    loader = get_loader(shard.loader_type)
    batch, total = [], 0
    counter = counters.READ_ROWS.counter(shard.dataset)
    for row in records.unique_row_ids(loader.read(shard)):  # a repeated id is a dead letter
        batch.append(row)
        if len(batch) >= batch_size:
            total += len(batch)
            counter.inc(len(batch))
            yield shard.dataset, batch
            batch = []
    if batch:
        total += len(batch)
        counter.inc(len(batch))
        yield shard.dataset, batch
    yield beam.pvalue.TaggedOutput(STATS, Report({counters.READ.key(shard.dataset): total}))


class ReadSources(beam.PTransform):
    """Source shards -> `.rows` batches and [STATS] Reports."""

    def expand(self, sources):
        return (
            sources
            | "ReadShards" >> beam.FlatMap(read_shard_batches).with_outputs(STATS, main="rows")
        )
