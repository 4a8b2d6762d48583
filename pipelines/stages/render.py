"""RenderTemplates: (dataset, [RawRow]) -> (dataset, [RenderedExample]) batches.

Checks declared field types, samples each row's copies and picks prompt setting, template and exemplars
from keyed hashes (`planning.sampling`), then renders. Rows that cannot be used go to [DEAD_LETTER]
with a reason; counts (sampled out, upsampled copies, exemplars that failed) go to [STATS].

An element is a batch (dataset, rows) or, for a task with a few-shot setting, one exemplar group
(dataset, rows, ordinal) from `stages.exemplars.GroupExemplars`: then the group's plan
(`planning.exemplars.plan_group`) decides each copy's setting, template and exemplars, and a
few-shot copy carries a `FewShotPrompt` that Tokenize fits. Templates that place `{{ options_block }}`
get a keyed option format (`planning.option_formats`), shared by the copy's exemplars.
"""
from __future__ import annotations

from collections import Counter

import apache_beam as beam

from pipelines.definitions.fieldtypes import field_problem
from pipelines.definitions.templates import compile_template, places_options_block, render
from pipelines.errors import RenderError
from pipelines.planning import exemplars, option_formats, sampling
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import RenderSlice
from pipelines.planning.sampling import SamplingTable
from pipelines import counters
from pipelines.records import DEAD_LETTER, STATS, RenderedBatch, RenderedExample, Report, dead_letter, new
from pipelines.definitions import render_budget
from pipelines.runner import startup_heap


def _option_format(template, seed: int, dataset: str, key: str, marker_share: float):
    """(option format, marker answer) of one copy: keyed choices, made only for templates that
    place `{{ options_block }}` (planning.option_formats); (None, False) otherwise."""
    if not places_options_block(template):
        return None, False
    fmt = option_formats.pick_format(seed, dataset, key)
    return fmt, option_formats.marker_answer(seed, dataset, key, fmt, marker_share)


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
        dataset, rows = element[0], element[1]  # (dataset, rows) or an exemplar group (dataset, rows, ordinal)
        plan = self.plan
        ds = plan.datasets[dataset]
        task = table.tasks[dataset]
        pool = table.pools.get(dataset, ())
        compiled = self.compiled[dataset]
        out = RenderedBatch()
        counts: Counter = Counter()
        marker_share = plan.option_marker_answers
        group = None
        if len(element) == 3:  # exemplars from the row's group (planning.exemplars)
            group, uses, no_exemplar = exemplars.plan_group(
                rows, [sampling.copies(task.rate, plan.seed, dataset, r.row_id) for r in rows], ds.templates,
                task.settings, plan.few_shot, plan.seed, dataset, element[2])
            counts.update(exemplars.reuse_counts(dataset, uses))
            if no_exemplar:
                counts[counters.FEWSHOT_NO_EXEMPLAR.key(dataset)] += no_exemplar
            separator = exemplars.separator(plan.seed, dataset)
        for index, row in enumerate(rows):
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
                if group is not None:
                    choice = group[key]
                    fmt, marker = _option_format(choice.template, plan.seed, dataset, key, marker_share)
                    try:
                        inputs, targets, shots, failed = exemplars.render_copy(
                            compiled, choice, rows, index, plan.few_shot, separator, fmt, marker, plan.seed, dataset)
                    except RenderError as exc:
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "render", str(exc)))
                        continue
                    if failed:
                        counts[counters.EXEMPLAR_RENDER_FAILED.key(dataset)] += failed
                    template, setting = choice.template, choice.setting
                    if choice.exemplars and not shots:  # every exemplar failed to render
                        setting = "zs_" + setting.split("_")[1]
                        counts[counters.FEWSHOT_FELL_BACK.key(dataset)] += 1
                    elif shots:
                        counts[counters.FEWSHOT_STYLE.key(choice.style)] += 1
                else:
                    variant = sampling.choose_variant(
                        ds.templates, task.settings, pool, plan.few_shot, plan.seed, dataset, row.row_id, key
                    )
                    template, setting = variant.template, variant.setting
                    fmt, marker = _option_format(template, plan.seed, dataset, key, marker_share)
                    ct = compiled[template.id]
                    try:
                        inputs, targets = render(ct, row.fields, (plan.seed, dataset, row.row_id), fmt, marker)
                    except RenderError as exc:
                        yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "render", str(exc)))
                        continue
                    shots = []
                    for ex_id, ex_fields in variant.exemplars:
                        try:
                            ex_in, ex_tg = render(ct, ex_fields, (plan.seed, dataset, ex_id), fmt, marker)
                        except RenderError:
                            counts[counters.EXEMPLAR_RENDER_FAILED.key(dataset)] += 1
                            continue
                        shots.append(ex_in + plan.few_shot.target_separator + ex_tg)
                    shots = tuple(shots)
                if fmt is not None:
                    counts[counters.OPTION_FORMAT.key(fmt.name)] += 1
                    if marker and fmt.enumerated:
                        counts[counters.OPTION_MARKER_ANSWER.key()] += 1
                out.append(new(RenderedExample, (template.id, key, setting, inputs, targets, shots)))
        counts[counters.RENDERED_EXAMPLES.key(dataset)] += len(out)
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
