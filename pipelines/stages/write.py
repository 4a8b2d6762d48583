"""WriteCorpus: (shard, [PackedBatch]) -> one TFRecord and/or one Parquet file per shard (`--formats`), and its Report.

Files go under the build's staging prefix; `publish` verifies and moves them.
"""
from __future__ import annotations

import concurrent.futures
from collections import Counter

import apache_beam as beam
import numpy as np

from pipelines.formats import file_formats, writers
from pipelines.formats.rows import PackedBatch
from pipelines.publish import card_stats
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import OutputSlice
from pipelines import counters
from pipelines.counters import count_example
from pipelines.records import Report


def shard_report(batches: list[PackedBatch], files, plan: BuildPlan, shard: int | None = None) -> Report:
    counts: Counter = Counter()
    for batch in batches:
        card_stats.count_batch(counts, batch, plan, shard)  # the data card's histograms
        a = batch.arrays
        counts[counters.ROWS.key()] += len(batch)
        if "inputs_segment_ids" in a:
            counts[counters.INPUTS_NONPAD.key()] += int(np.count_nonzero(a["inputs_segment_ids"]))
        counts[counters.TARGETS_NONPAD.key()] += int(np.count_nonzero(a["targets_segment_ids"]))
        if "loss_mask" in a:
            counts[counters.LOSS_TOKENS.key()] += int(np.count_nonzero(a["loss_mask"]))
        tokens = batch.segment_tokens.tolist()
        for (n_in, n_tg), prov in zip(tokens, (p for row in batch.provenance for p in row)):
            dataset = count_example(counts, prov)
            counts[counters.INPUTS_TOKENS.key(dataset)] += n_in
            counts[counters.TARGETS_TOKENS.key(dataset)] += n_tg
    return Report(dict(counts), tuple(files))


def shard_path(plan: BuildPlan, file_format: str, shard: int) -> str:
    """`tfrecord/M-S-SSSSS-of-NNNNN.tfrecord` or `parquet/...parquet`, relative to the output."""
    return f"{file_format}/" + writers.shard_name(f"{plan.mixture}-{plan.split}", shard, plan.num_shards, f".{file_format}")


def write_packed_shard(shard: int, batches: list[PackedBatch], plan: BuildPlan, output_dir: str) -> Report:
    """Write one shard's files in the plan's formats (`--formats`; empty files for no batches); its Report."""
    num_rows = sum(len(b) for b in batches)
    wanted = getattr(plan, "file_formats", file_formats.DEFAULT_FORMATS)
    files = []
    if wanted == (file_formats.PARQUET,):
        files.append(writers.write_file(output_dir, shard_path(plan, file_formats.PARQUET, shard),
                                        writers.parquet_bytes(batches, plan.layout), num_rows))
    elif wanted == (file_formats.TFRECORD,):
        files.append(writers.write_file(output_dir, shard_path(plan, file_formats.TFRECORD, shard),
                                        writers.tfrecord_bytes(batches), num_rows))
    else:
        # Parquet encoding releases the GIL (Arrow's C++), so it overlaps the TFRecord serialization.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            parquet = pool.submit(writers.parquet_bytes, batches, plan.layout)
            tfrecord = writers.tfrecord_bytes(batches)
            files.append(writers.write_file(output_dir, shard_path(plan, file_formats.TFRECORD, shard), tfrecord, num_rows))
            files.append(writers.write_file(output_dir, shard_path(plan, file_formats.PARQUET, shard), parquet.result(), num_rows))
    return shard_report(batches, files, plan, shard)


class WriteShardFn(beam.DoFn):
    def __init__(self, plan: OutputSlice | BuildPlan, output_dir: str):
        self.plan, self.output_dir = plan, output_dir

    def process(self, element):
        shard, batches = element
        report = write_packed_shard(shard, batches, self.plan, self.output_dir)
        counters.WRITTEN_ROWS.counter().inc(report.counts.get(counters.ROWS.key(), 0))
        for dataset, count in counters.by_part(report.counts, counters.EXAMPLES).items():
            counters.WRITTEN.counter(dataset).inc(count)
        yield report


class WriteCorpus(beam.PTransform):
    """(shard, [PackedBatch]) -> one Report per shard written."""

    def __init__(self, plan: BuildPlan, output_dir: str):
        super().__init__()
        self.plan, self.output_dir = plan, output_dir

    def expand(self, packed):
        return packed | "WriteShard" >> beam.ParDo(WriteShardFn(OutputSlice.of(self.plan), self.output_dir))
