"""MergeReports and FinishCorpus: what only the whole job knows.

    all reports | MergeReports | FinishCorpus (finish_corpus)  ->  dead_letter/ file, empty shards' files
"""
from __future__ import annotations

import json
from collections import Counter

from pipelines.formats import writers
from pipelines.planning.plan import BuildPlan
import apache_beam as beam

from pipelines import counters
from pipelines.records import Report, dead_letter_key
from pipelines.stages import dead_letter_policy, write_text
from pipelines.stages.write import shard_path, write_packed_shard


DEAD_LETTER_FILE = "dead_letter/dead_letter-00000-of-00001.jsonl"


def dead_letter_report(record: dict) -> Report:
    """A dead-letter record on its way to the merged Report (and from there to one file)."""
    return Report(dead_letters=(record,))


def finish_corpus(report: Report, plan: BuildPlan, output_dir: str) -> Report:
    """After every stage has reported: write the dead-letter file (sorted JSONL, written even when
    empty so every corpus has one; the counts go to the manifest) and the empty files of output
    shards that received no rows, so every shard series is complete. Returns the full Report."""
    counts = Counter(report.counts)
    files = list(report.files)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in report.dead_letters).encode("utf-8")
    files.append(writers.write_file(output_dir, DEAD_LETTER_FILE, data, len(report.dead_letters)))
    counts.update(counters.DEAD_LETTERS.key(r["dataset"], r["stage"]) for r in report.dead_letters)
    written = {f.path for f in report.files}
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
    dead_letter_policy.check(counts, plan.max_dead_letter_fraction)  # raises before anything is published
    return Report(dict(counts), tuple(sorted(files, key=lambda f: f.path)))


class MergeReports(beam.CombineFn):
    """Sums the Reports of every stage into one (counts added, files and dead letters sorted)."""

    def create_accumulator(self):
        return Counter(), [], []

    def add_input(self, acc, report: Report):
        acc[0].update(report.counts)
        acc[1].extend(report.files)
        acc[2].extend(report.dead_letters)
        return acc

    def merge_accumulators(self, accs):
        counts, files, dead = Counter(), [], []
        for c, f, d in accs:
            counts.update(c)
            files.extend(f)
            dead.extend(d)
        return counts, files, dead

    def extract_output(self, acc):
        counts, files, dead = acc
        return Report(dict(counts), tuple(sorted(files, key=lambda f: f.path)), tuple(sorted(dead, key=dead_letter_key)))
