"""RenderTemplates: (dataset, [RawRow]) -> (dataset, [RenderedExample]) batches.

Checks declared field types, samples each row's copies and picks prompt setting, template and exemplars
from keyed hashes (`planning.sampling`), then renders. Rows that cannot be used go to [DEAD_LETTER]
with a reason; counts (sampled out, upsampled copies, exemplars that failed) go to [STATS].
"""
from __future__ import annotations

from collections import Counter

import apache_beam as beam

from pipelines.definitions.fieldtypes import field_problem
from pipelines.definitions.templates import compile_template, render
from pipelines.errors import RenderError
from pipelines.planning import sampling
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import RenderSlice
from pipelines.planning.sampling import SamplingTable
from pipelines import counters
from pipelines.records import DEAD_LETTER, STATS, RenderedBatch, RenderedExample, Report, dead_letter, new
from pipelines.definitions import render_budget
from pipelines.runner import startup_heap


class RenderBatchFn(beam.DoFn):
    """Checks declared field types, samples each row's copies, picks prompt setting, template and
    exemplars from keyed hashes, and renders. Side input: the build's SamplingTable."""

    def __init__(self, plan: RenderSlice | BuildPlan):
        self.plan = plan

    def setup(self):
        startup_heap.freeze_once_in_worker()
        render_budget.configure(self.plan.render_budget)
        self.compiled = {
            name: {t.id: compile_template(t) for t in ds.templates} for name, ds in self.plan.datasets.items()
        }
        self.rendered = counters.RENDERED.counter()

    def process(self, element, table: SamplingTable):
        dataset, rows = element
        plan = self.plan
        ds = plan.datasets[dataset]
        task = table.tasks[dataset]
        pool = table.pools.get(dataset, ())
        compiled = self.compiled[dataset]
        out = RenderedBatch()
        counts: Counter = Counter()
        for row in rows:
            if row.error is not None:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, row.row_id, "read", row.error, row.raw))
                continue
            problem = field_problem(row.fields, ds.fields)
            if problem is not None:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, row.row_id, "render", problem))
                continue
            n_copies = sampling.copies(task.rate, plan.seed, dataset, row.row_id)
            if n_copies == 0:
                counts[counters.SAMPLED_OUT.key(dataset)] += 1
                continue
            if n_copies > 1:
                counts[counters.UPSAMPLED_COPIES.key(dataset)] += n_copies - 1
            for c in range(n_copies):
                key = sampling.copy_key(row.row_id, c)
                variant = sampling.choose_variant(
                    ds.templates, task.settings, pool, plan.few_shot, plan.seed, dataset, row.row_id, key
                )
                ct = compiled[variant.template.id]
                try:
                    inputs, targets = render(ct, row.fields, (plan.seed, dataset, row.row_id))
                except RenderError as exc:
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "render", str(exc)))
                    continue
                shots = []
                for ex_id, ex_fields in variant.exemplars:
                    try:
                        ex_in, ex_tg = render(ct, ex_fields, (plan.seed, dataset, ex_id))
                    except RenderError:
                        counts[counters.EXEMPLAR_RENDER_FAILED.key(dataset)] += 1
                        continue
                    shots.append(ex_in + plan.few_shot.target_separator + ex_tg)
                out.append(new(RenderedExample, (variant.template.id, key, variant.setting, inputs, targets, tuple(shots))))
        self.rendered.inc(len(out))
        counters.RENDERED_BY_DATASET.counter(dataset).inc(len(out))
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(dict(counts)))
        if out:
            yield dataset, out


class RenderTemplates(beam.PTransform):
    """(dataset, [RawRow]) -> `.rendered` (dataset, [RenderedExample]), [DEAD_LETTER], [STATS]."""

    def __init__(self, plan: BuildPlan, table):
        super().__init__()
        self.plan, self.table = plan, table

    def expand(self, batches):
        return batches | "Render" >> beam.ParDo(RenderBatchFn(RenderSlice.of(self.plan)), beam.pvalue.AsSingleton(self.table)).with_outputs(
            DEAD_LETTER, STATS, main="rendered"
        )
