"""WriteCorpus: (shard, grouped batches) from `Pack` -> one TFRecord and/or one Parquet file per shard
(`--formats`), and its Report. The shard's rows are packed here (`pack.pack_shard`) and streamed into
the files a batch at a time, so what a worker holds does not grow with the shard.

Files go under the build's staging prefix; `publish` verifies and moves them.
"""
from __future__ import annotations

import concurrent.futures
import itertools
from collections import Counter
from typing import Iterable

import apache_beam as beam
import numpy as np

from pipelines.formats import file_formats, writers
from pipelines.formats.rows import PackedBatch
from pipelines.publish import card_stats
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import OutputSlice, PackSlice
from pipelines import counters
from pipelines.counters import count_example
from pipelines.records import Report
from pipelines.stages.pack import pack_shard


def count_batch(counts: Counter, batch: PackedBatch, plan: BuildPlan, shard: int | None = None) -> None:
    """Add one batch of a shard's rows to the shard's counts (rows, tokens, examples per dataset, the
    data card's histograms)."""
    card_stats.count_batch(counts, batch, plan, shard)  # the data card's histograms
    a = batch.arrays
    counts[counters.ROWS.key()] += len(batch)
    if "inputs_segment_ids" in a:
        counts[counters.INPUTS_NONPAD.key()] += int(np.count_nonzero(a["inputs_segment_ids"]))
    counts[counters.TARGETS_NONPAD.key()] += int(np.count_nonzero(a["targets_segment_ids"]))
    if "loss_mask" in a:
        counts[counters.LOSS_TOKENS.key()] += int(np.count_nonzero(a["loss_mask"]))
    # Examples of one (dataset, template, setting) are summed first, then counted once: a batch holds
    # thousands of examples of a few dozen such triples.
    per: dict[str, list[int]] = {}
    for (n_in, n_tg), prov in zip(batch.segment_tokens.tolist(), itertools.chain.from_iterable(batch.provenance)):
        head = prov[: prov.index("|", prov.index("|", prov.index("|") + 1) + 1) + 1]  # "dataset|template|setting|"
        sums = per.get(head)
        if sums is None:
            per[head] = [1, n_in, n_tg]
        else:
            sums[0] += 1
            sums[1] += n_in
            sums[2] += n_tg
    for head, (n, n_in, n_tg) in per.items():
        dataset = count_example(counts, head, n)
        counts[counters.INPUTS_TOKENS.key(dataset)] += n_in
        counts[counters.TARGETS_TOKENS.key(dataset)] += n_tg


def shard_path(plan: BuildPlan, file_format: str, shard: int) -> str:
    """`tfrecord/M-S-SSSSS-of-NNNNN.tfrecord` or `parquet/...parquet`, relative to the output."""
    return f"{file_format}/" + writers.shard_name(f"{plan.mixture}-{plan.split}", shard, plan.num_shards, f".{file_format}")


def write_packed_shard(shard: int, batches: Iterable[PackedBatch], plan: BuildPlan, output_dir: str) -> Report:
    """Write one shard's files in the plan's formats (`--formats`; empty files for no batches) as the
    batches come (a generator: `pack.pack_shard`), holding two batches at most; its Report.

    Parquet encoding releases the GIL (Arrow's C++), so it runs in a helper thread, one batch behind:
    batch k is encoded to Parquet while batch k+1 is packed and serialized to TFRecord."""
    wanted = getattr(plan, "file_formats", file_formats.DEFAULT_FORMATS)
    tfrecord = (writers.TFRecordShardWriter(output_dir, shard_path(plan, file_formats.TFRECORD, shard))
                if file_formats.TFRECORD in wanted else None)
    parquet = (writers.ParquetShardWriter(output_dir, shard_path(plan, file_formats.PARQUET, shard), plan.layout)
               if file_formats.PARQUET in wanted else None)
    counts: Counter = Counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for batch in batches:
            if tfrecord is not None:
                tfrecord.add(batch)
            if parquet is not None:
                if pending is not None:
                    pending.result()
                pending = pool.submit(parquet.add, batch)
            count_batch(counts, batch, plan, shard)
        if pending is not None:
            pending.result()
    files = [writer.close() for writer in (tfrecord, parquet) if writer is not None]
    return Report(dict(counts), tuple(files))


class WriteShardFn(beam.DoFn):
    """(shard, grouped batches) from `Pack` -> the shard's Report: packs (`pack.pack_shard`) and writes
    in one pass, a batch of rows at a time."""

    def __init__(self, plan: OutputSlice | BuildPlan, pack_plan: PackSlice | BuildPlan, output_dir: str):
        self.plan, self.pack_plan, self.output_dir = plan, pack_plan, output_dir

    def process(self, element):
        shard, grouped = element
        report = write_packed_shard(shard, pack_shard(grouped, self.pack_plan), self.plan, self.output_dir)
        counters.WRITTEN_ROWS.counter().inc(report.counts.get(counters.ROWS.key(), 0))
        for dataset, count in counters.by_part(report.counts, counters.EXAMPLES).items():
            counters.WRITTEN.counter(dataset).inc(count)
        yield report


class WriteCorpus(beam.PTransform):
    """(shard, grouped batches) from `Pack` -> one Report per shard written."""

    def __init__(self, plan: BuildPlan, output_dir: str):
        super().__init__()
        self.plan, self.output_dir = plan, output_dir

    def expand(self, packed):
        return packed | "WriteShard" >> beam.ParDo(WriteShardFn(OutputSlice.of(self.plan), PackSlice.of(self.plan), self.output_dir))
