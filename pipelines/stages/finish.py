"""MergeReports and FinishCorpus: what only the whole job knows.

    all reports | MergeReports | FinishCorpus (finish_corpus)  ->  empty shards' files (output and dead letters)

Dead letters are not here: the workers that hold a dead-letter shard write it (`stages.dead_letters`)
and only its counts and file travel in the Reports.
"""
from __future__ import annotations

from collections import Counter

from pipelines.planning.plan import BuildPlan
import apache_beam as beam

from pipelines.records import Report
from pipelines.stages import dead_letter_policy, dead_letters, ledger, write_text
from pipelines.stages.write import shard_path, write_packed_shard


def finish_corpus(report: Report, plan: BuildPlan, output_dir: str) -> Report:
    """After every stage has reported: write the empty files of output shards and dead-letter
    shards that received nothing, so every shard series is complete (every corpus has its
    dead-letter files, empty or not), and apply the dead-letter policy. Returns the full Report."""
    counts = Counter(report.counts)
    files = list(report.files)
    written = {f.path for f in report.files}
    count = getattr(plan, "dead_letter_shards", 1)
    for shard in range(count):
        if dead_letters.shard_path(shard, count) not in written:
            files.append(dead_letters.write_dead_letter_shard(shard, [], count, output_dir).files[0])
    for shard in range(plan.num_shards):
        if plan.output_format == "jsonl":
            if write_text.shard_path(plan, shard) not in written:
                extra = write_text.write_text_shard(shard, [], plan, output_dir)
                counts.update(extra.counts)
                files.extend(extra.files)
        elif shard_path(plan, plan.file_formats[0], shard) not in written:
            extra = write_packed_shard(shard, [], plan, output_dir)
            counts.update(extra.counts)
            files.extend(extra.files)
    ledger.check(counts)  # every row read is accounted for; raises before anything is published
    dead_letter_policy.check(counts, plan.max_dead_letter_fraction)  # raises before anything is published
    return Report(dict(counts), tuple(sorted(files, key=lambda f: f.path)))


class MergeReports(beam.CombineFn):
    """Sums the Reports of every stage into one (counts added, files sorted). What it holds is
    counts and file descriptions, never rows or dead letters."""

    def create_accumulator(self):
        return Counter(), []

    def add_input(self, acc, report: Report):
        acc[0].update(report.counts)
        acc[1].extend(report.files)
        return acc

    def merge_accumulators(self, accs):
        counts, files = Counter(), []
        for c, f in accs:
            counts.update(c)
            files.extend(f)
        return counts, files

    def extract_output(self, acc):
        counts, files = acc
        return Report(dict(counts), tuple(sorted(files, key=lambda f: f.path)))
