"""From measured sizes to sampling rates: the mixture's weights resolved against the survey's counts,
a token target turned into an example target, and each task's rate and prompt settings
(`SamplingTable`, the side input of RenderTemplates). The survey stage measures; this decides."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from pipelines.definitions.mixtures import default_target, resolve_weights, sampling_rate
from pipelines.definitions.templates import compile_template, render
from pipelines.definitions import render_budget
from pipelines.errors import RenderError
from pipelines.planning import exemplars
from pipelines.planning.fewshot import fit_few_shot
from pipelines.planning.sampling import SamplingTable, TaskSampling, Variant, choose_variant, supported_settings
from pipelines.vocab import Vocabulary, worker_vocabulary


def tokens_per_example(task: str, pool, templates, settings, plan, vocab: Vocabulary) -> float:
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
    # the build joins exemplars with the task's keyed separator (planning.exemplars)
    few_shot = dataclasses.replace(plan.few_shot, example_separator=exemplars.separator(plan.seed, task))
    for i, (inputs, _, shots, _) in enumerate(samples):
        n_in = len(fit_few_shot(vocab, inputs, ids[i], shots, plan.inputs_length - 1, few_shot)[0]) if shots else len(ids[i])
        n_tg = len(ids[n + i])
        if plan.layout == "decoder":
            sizes.append(min(n_in + n_tg + 2, plan.decoder_length))
        else:
            sizes.append(min(n_in + 1, plan.inputs_length) + min(n_tg + 1, plan.targets_length))
    weights = [s[3] for s in samples]
    return sum(w * size for w, size in zip(weights, sizes)) / sum(weights)


def sampling_table(survey, plan, model_proto: bytes | None = None) -> SamplingTable:
    """`survey`: a `stages.survey.Survey`; `plan`: the survey's slice (or the whole plan).
    Weights from the mixture and the measured sizes, then per-task sampling rates and settings.
    A token target becomes an example target: tokens / sum(weight x tokens per example)."""
    render_budget.configure(plan.render_budget)  # exemplar renders below, on a worker
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
    return SamplingTable(target, tasks, side_input_pools(pools, tasks, plan.exemplar_groups), plan.target_tokens, per_example)


def side_input_pools(pools: Mapping[str, tuple], tasks: Mapping[str, TaskSampling], exemplar_groups: bool) -> dict[str, tuple]:
    """The pools the table carries to every worker: only those rendering reads. A task without a few-shot
    setting never shows a pool row, and a grouped task (`planning.exemplars.wants_groups`) takes its
    exemplars from its own group, so their rows (all fields, for flan2022 tens of MB unpickled in every
    bundle) stay behind; the settings and the token estimate above have used them already."""
    def rendering_reads(task: TaskSampling) -> bool:
        few_shot = any(s.startswith("fs") and p > 0 for s, p in task.settings)
        return few_shot and not (exemplar_groups and exemplars.wants_groups(task.settings, task.count))

    return {name: pool for name, pool in pools.items() if name in tasks and rendering_reads(tasks[name])}
