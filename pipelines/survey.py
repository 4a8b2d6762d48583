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

from pipelines.errors import RenderError
from pipelines.fieldtypes import field_problem
from pipelines.hashing import keyed_hash
from pipelines.loaders import SourceShard, get_loader
from pipelines.mixtures import default_target, resolve_weights, sampling_rate
from pipelines.plan import BuildPlan
from pipelines.sampling import SamplingTable, TaskSampling, Variant, choose_variant, fit_few_shot, supported_settings
from pipelines.templates import compile_template, render
from pipelines.vocab import Vocabulary, worker_vocabulary


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
        yield shard.dataset, loader.count_rows(shard), ()
        return
    heap: list = []
    count = 0
    for row in loader.read(shard):
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


def tokens_per_example(task: str, pool, templates, settings, plan: BuildPlan, vocab: Vocabulary) -> float:
    """Mean tokens (inputs + targets, with EOS, within the lengths) of the task's pool rows, each
    rendered and fitted the way the build does it (prompt setting, template, few-shot exemplars)."""
    samples = []  # (inputs, targets, exemplar texts, probability of this variant for its row)
    for row_id, fields in pool:
        # Average over the prompt settings (or templates) instead of sampling one: less noise.
        if settings:
            variants = [(choose_variant(templates, settings, pool, plan.few_shot, plan.seed, task, row_id, row_id, s), p)
                        for s, p in settings]
        else:
            variants = [(Variant(t, t.prompt_setting), 1 / len(templates)) for t in templates]
        for variant, p in variants:
            compiled = compile_template(variant.template)
            try:
                inputs, targets = render(compiled, fields, (plan.seed, task, row_id))
                shots = tuple(plan.few_shot.target_separator.join(render(compiled, f, (plan.seed, task, ex_id)))
                              for ex_id, f in variant.exemplars)
            except RenderError:
                continue
            samples.append((inputs, targets, shots, p))
    if not samples:
        return 0.0
    ids = vocab.encode_batch([s[0] for s in samples] + [s[1] for s in samples], num_threads=1)
    n, sizes = len(samples), []
    for i, (inputs, _, shots, _) in enumerate(samples):
        n_in = len(fit_few_shot(vocab, inputs, ids[i], shots, plan.inputs_length - 1, plan.few_shot)[0]) if shots else len(ids[i])
        n_tg = len(ids[n + i])
        if plan.layout == "decoder":
            sizes.append(min(n_in + n_tg + 2, plan.decoder_length))
        else:
            sizes.append(min(n_in + 1, plan.inputs_length) + min(n_tg + 1, plan.targets_length))
    weights = [s[3] for s in samples]
    return sum(w * size for w, size in zip(weights, sizes)) / sum(weights)


def sampling_table(survey: Survey, plan: BuildPlan, model_proto: bytes | None = None) -> SamplingTable:
    """Weights from the mixture and the measured sizes, then per-task sampling rates and settings.
    A token target becomes an example target: tokens / sum(weight x tokens per example)."""
    weights = resolve_weights(plan.mixture_spec, plan.catalog, survey.counts, set(plan.datasets))
    pools = {task: tuple((r, f) for _, r, f in pool) for task, pool in survey.pools.items()}
    settings = {
        w.task: supported_settings(plan.datasets[w.task].templates, w.prompt_settings, len(pools.get(w.task, ())))
        if w.prompt_settings else ()
        for w in weights
    }
    per_example = None
    target = plan.target_examples or default_target(weights, survey.counts)
    if plan.target_tokens:
        vocab = worker_vocabulary(model_proto, plan.vocab_path, plan.vocab_sha256)
        per_example = {
            w.task: tokens_per_example(w.task, pools.get(w.task, ()), plan.datasets[w.task].templates,
                                       settings[w.task], plan, vocab)
            for w in weights
        }
        mean = sum(w.weight * per_example[w.task] for w in weights)
        target = max(1, round(plan.target_tokens / mean)) if mean else 0
    tasks = {}
    for w in weights:
        count = survey.counts.get(w.task, 0)
        tasks[w.task] = TaskSampling(
            w.task, w.collection, w.weight, count, sampling_rate(w.weight, count, target, plan.upsample),
            settings[w.task], w.path, w.cap,
        )
    return SamplingTable(target, tasks, pools, plan.target_tokens, per_example)


class SurveySources(beam.PTransform):
    """sources -> a single SamplingTable."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None = None):
        super().__init__()
        self.plan, self.model_proto = plan, model_proto

    def expand(self, sources):
        return (
            sources
            | "SurveyShards" >> beam.FlatMap(survey_shard, self.plan)
            # survey_shard yields for every source and a plan has at least one: no default needed
            | "MergeSurvey" >> beam.CombineGlobally(MergeSurvey(self.plan.pool_size)).without_defaults()
            | "SamplingTable" >> beam.Map(sampling_table, self.plan, self.model_proto)
        )
