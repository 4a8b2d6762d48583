"""The survey pass: before sampling, count each task's rows and keep a small exemplar pool per task.

Examples-proportional weights need every task's size, and few-shot prompts need rows of the same
task; both are gathered by one streaming read and merged by a CombineFn (bounded memory: a count and
`pool_size` rows per task), then turned into a `SamplingTable` that later stages get as a side input.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Mapping

import apache_beam as beam

from pipelines.definitions.fieldtypes import field_problem
from pipelines.planning.hashing import keyed_hash
from pipelines.loaders import SourceShard, get_loader, records
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import SurveySlice
from pipelines.planning.weights import sampling_table


@dataclass(frozen=True)
class Survey:
    counts: Mapping[str, int]
    pools: Mapping[str, tuple]  # task -> ((hash, row_id, fields), ...) sorted by hash


def survey_shard(shard: SourceShard, plan: BuildPlan):
    """(task, count, smallest-hash pool rows) for one source shard."""
    declared = plan.datasets[shard.dataset].fields
    size = plan.pool_size
    loader = get_loader(shard.loader_type)
    if not size and hasattr(loader, "count_rows"):  # no exemplars wanted: only the size matters
        known = loader.count_rows(shard)
        if known is not None:  # None: this shard's loader cannot count without reading
            yield shard.dataset, known, ()
            return
    heap: list = []
    count = 0
    for row in records.unique_row_ids(loader.read(shard)):  # as the build reads it
        if row.error is not None or field_problem(row.fields, declared) is not None:
            continue
        count += 1
        if size:
            item = (keyed_hash(plan.seed, "pool", shard.dataset, row.row_id), row.row_id, dict(row.fields))
            if len(heap) < size:
                heapq.heappush(heap, (-item[0], item[1], item[2]))
            elif item[0] < -heap[0][0]:
                heapq.heapreplace(heap, (-item[0], item[1], item[2]))
    pool = tuple(sorted((-h, r, f) for h, r, f in heap))
    yield shard.dataset, count, pool


class MergeSurvey(beam.CombineFn):
    def __init__(self, pool_size: int):
        self.pool_size = pool_size

    def create_accumulator(self):
        return {}, {}

    def add_input(self, acc, element):
        task, count, pool = element
        counts, pools = acc
        counts[task] = counts.get(task, 0) + count
        pools[task] = tuple(sorted(pools.get(task, ()) + pool, key=lambda x: (x[0], x[1])))[: self.pool_size]
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for counts, pools in accs:
            for task in counts:
                self.add_input(out, (task, counts[task], pools.get(task, ())))
        return out

    def extract_output(self, acc):
        counts, pools = acc
        return Survey(dict(sorted(counts.items())), dict(sorted(pools.items())))


class SurveySources(beam.PTransform):
    """sources -> a single SamplingTable."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None = None):
        super().__init__()
        self.plan, self.model_proto = plan, model_proto

    def expand(self, sources):
        plan = SurveySlice.of(self.plan)
        if self.plan.cache_dir and plan.pool_size:  # --cache: unchanged files are not read again (cache.survey)
            from pipelines.cache.keys import survey_common
            from pipelines.cache.survey import cached_survey_shard

            surveyed = sources | "SurveyShards" >> beam.FlatMap(
                cached_survey_shard, plan, self.plan.cache_dir, survey_common(self.plan), survey_shard)
        else:  # (without a pool, survey_shard counts rows without reading them where the loader can)
            surveyed = sources | "SurveyShards" >> beam.FlatMap(survey_shard, plan)
        return (
            surveyed
            # survey_shard yields for every source and a plan has at least one: no default needed
            | "MergeSurvey" >> beam.CombineGlobally(MergeSurvey(plan.pool_size)).without_defaults()
            | "SamplingTable" >> beam.Map(sampling_table, plan, self.model_proto)
        )
