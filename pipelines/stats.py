"""Build statistics: flat counters with tuple keys, merged by a Beam CombineFn (no driver-side
collection), plus the files each shard writer produced and the dead-letter records (one sorted file
written once everything is merged, see `transforms.finish_corpus`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import apache_beam as beam

from pipelines.writers import WrittenFile


@dataclass(frozen=True)
class Report:
    counts: dict = field(default_factory=dict)  # tuple key -> int
    files: tuple[WrittenFile, ...] = ()
    dead_letters: tuple[dict, ...] = ()  # transforms.dead_letter records not yet written


def count_example(counts: Counter, provenance: str) -> str:
    """Count one written example by its provenance `dataset|template_id|setting|row_id` (the same
    counters for every output format); returns the dataset."""
    dataset, template_id, setting, _ = provenance.split("|", 3)
    counts[("examples", dataset)] += 1
    counts[("template", template_id)] += 1
    counts[("setting", setting)] += 1
    counts[("task_setting", dataset, setting)] += 1
    return dataset


def dead_letter_key(record: dict) -> tuple:
    return record["dataset"], record["row_id"], record["stage"]


class MergeReports(beam.CombineFn):
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
