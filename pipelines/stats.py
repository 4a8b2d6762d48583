"""Build statistics: flat counters with tuple keys, merged by a Beam CombineFn (no driver-side
collection), plus the files each shard writer produced."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import apache_beam as beam

from pipelines.writers import WrittenFile


@dataclass(frozen=True)
class Report:
    counts: dict = field(default_factory=dict)  # tuple key -> int
    files: tuple[WrittenFile, ...] = ()


def count_example(counts: Counter, provenance: str) -> str:
    """Count one written example by its provenance `dataset|template_id|setting|row_id` (the same
    counters for every output format); returns the dataset."""
    dataset, template_id, setting, _ = provenance.split("|", 3)
    counts[("examples", dataset)] += 1
    counts[("template", template_id)] += 1
    counts[("setting", setting)] += 1
    counts[("task_setting", dataset, setting)] += 1
    return dataset


class MergeReports(beam.CombineFn):
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
