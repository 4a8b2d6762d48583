"""Few-shot decisions (pipelines/planning/exemplars.py) on real shipped rows: a prompt never shows its
own row, exemplars are reused evenly and independently of arrival order, settings land on target,
NIV2's definition is stated once, and fitting never exceeds the budget."""
from __future__ import annotations

import collections
import random

from pipelines.definitions.mixtures import FewShotConfig
from pipelines.definitions.templates import bind_templates, compile_template
from pipelines.planning import exemplars
from pipelines.planning.exemplars import FewShotPrompt, assemble, assign_settings, fit_batch, plan_group, window
from pipelines.planning.fewshot import estimated_fit

from buildkit import real_rows


def catalog_templates(catalog, families, dataset):
    entry = catalog[dataset]
    return bind_templates(entry.templates, families, entry.template_vars)


def test_window_never_holds_the_query_and_has_distinct_rows():
    for n in (2, 3, 7, 64):
        for position in range(n):
            for copy in range(3):
                for k in (1, 3, 5):
                    w = window(position, n, copy, k, 5)
                    assert position not in w and len(set(w)) == len(w) == min(k, n - 1)


def test_group_plan_never_shows_the_query_reuses_evenly_and_ignores_arrival_order(catalog, families):
    rows = real_rows(catalog, "cot_gsm8k", 200)
    copies = [1 + (i % 3 == 0) for i in range(len(rows))]  # some rows upsampled
    cfg = FewShotConfig(min_exemplars=1, max_exemplars=5)
    settings = (("fs_noopt", 0.5), ("zs_noopt", 0.5))
    templates = tuple(catalog_templates(catalog, families, "cot_gsm8k"))
    choices, uses, no_exemplar = plan_group(rows, copies, templates, settings, cfg, 0, "cot_gsm8k", 3)
    assert no_exemplar == 0 and len(choices) == sum(copies)
    styles = collections.Counter()
    for key, c in choices.items():
        own = key.split("#")[0]
        assert own not in {rows[i].row_id for i in c.exemplars}
        if c.setting.startswith("fs") and c.template.shots == "zero_shot":
            assert 1 <= len(c.exemplars) <= 5 and len(c.shot_templates) == len(c.exemplars)
            styles[c.style] += 1
    assert set(styles) == {"same_template", "template_mix"}  # Flan's two styles
    mean = sum(uses) / len(uses)
    assert 0.5 < mean < 2.5 and max(uses) <= 4 * mean  # a small multiple of the mean, not a pool's hundreds
    shuffled = list(range(len(rows)))
    random.Random(1).shuffle(shuffled)
    again, _, _ = plan_group([rows[i] for i in shuffled], [copies[i] for i in shuffled], templates, settings, cfg, 0,
                             "cot_gsm8k", 3)
    by_id = lambda ch, rs: {k: (c.template.id, c.setting, tuple(rs[i].row_id for i in c.exemplars)) for k, c in ch.items()}  # noqa: E731
    assert by_id(again, [rows[i] for i in shuffled]) == by_id(choices, rows)


def test_settings_are_on_target_within_a_group_and_across_many_small_tasks():
    settings = (("fs_noopt", 0.25), ("fs_opt", 0.25), ("zs_noopt", 0.25), ("zs_opt", 0.25))
    got = assign_settings([f"r{i}" for i in range(101)], settings, 0, "t", 0.3)
    counts = collections.Counter(got.values())
    assert all(abs(v - 101 / 4) <= 1 for v in counts.values())
    # 80 tasks of 7 rows at 50/50 (the demo's NIV2 shape): independent draws would miss by ~2%
    total = collections.Counter()
    for t in range(80):
        got = assign_settings([f"r{i}" for i in range(7)], (("fs_noopt", 0.5), ("zs_noopt", 0.5)), 0, f"task{t}",
                              exemplars.group_offset(0, t))
        total.update(got.values())
    assert abs(total["fs_noopt"] / 560 - 0.5) < 0.01


def test_separators_vary_between_tasks_and_are_fixed_per_task():
    names = [f"task{i}" for i in range(200)]
    got = [exemplars.separator(0, n) for n in names]
    assert got == [exemplars.separator(0, n) for n in names]
    assert set(got) == set(exemplars.SEPARATORS) and len(exemplars.SEPARATORS) >= 3


def test_definition_is_stated_once_and_exemplars_come_before_the_query(catalog, families):
    templates = catalog_templates(catalog, families, "task1146_country_capital")
    t = next(t for t in templates if t.lead_once)
    assert t.num_exemplars == 2  # Flan's NIV2 x-shot: two same-task exemplars
    rows = real_rows(catalog, "task1146_country_capital")
    compiled = {x.id: compile_template(x) for x in templates}
    choice = exemplars.CopyChoice(t, "fs_noopt", (1, 2), (t, t), "same_template")
    inputs, targets, prompt, failed = exemplars.render_copy(compiled, choice, rows, 0, FewShotConfig(), "\n\n")
    text = prompt.text(2)
    definition = rows[0].fields["definition"].strip()
    assert failed == 0 and text.count(definition) == 1 and text.startswith(inputs.split("\n\n")[0])
    assert text.index(rows[1].fields["input"]) < text.index(rows[2].fields["input"]) < text.rindex(rows[0].fields["input"])
    assert text.endswith(inputs[len(prompt.lead):].lstrip("\n")) and targets == rows[0].fields["output"]


def test_niv2_has_a_positive_example_with_explanation_variant(catalog, families):
    templates = catalog_templates(catalog, families, "task1146_country_capital")
    own = [t for t in templates if t.shots == "few_shot"]
    assert len(own) >= 3
    row = real_rows(catalog, "task1146_country_capital")[0]
    example = row.fields["positive_examples"][0]
    inputs, _ = exemplars.render_copy({t.id: compile_template(t) for t in own},
                                      exemplars.CopyChoice(own[0], "fs_noopt", style="own"), [row], 0,
                                      FewShotConfig(), "\n\n")[:2]
    assert example["output"] in inputs and example["explanation"].strip() in inputs
    assert inputs.count(row.fields["definition"].strip()) == 1


def fit_one(vocab, query_ids: list[int], prompt: FewShotPrompt, budget: int) -> tuple[list[int], int]:
    """The fitting steps for one prompt, one encode at a time (what `fit_batch` must answer): estimate
    from per-part counts, drop exemplars until the joined text fits, then add while one more fits."""
    parts = [prompt.lead, prompt.body, *prompt.shots] if prompt.lead else [prompt.body, *prompt.shots]
    ids = vocab.encode_batch(parts, num_threads=1)
    head = len(ids[0]) + len(ids[1]) + 2 if prompt.lead else len(ids[0]) + 1
    n = len(prompt.shots)
    k = estimated_fit([len(s) for s in ids[-n:]] if n else [], head, budget)
    full = None
    while k > 0:
        full = vocab.encode_batch([prompt.text(k)], num_threads=1)[0]
        if len(full) <= budget:
            break
        k, full = k - 1, None
    while k < n and (k == 0 or full is not None):
        more = vocab.encode_batch([prompt.text(k + 1)], num_threads=1)[0]
        if len(more) > budget:
            break
        full, k = more, k + 1
    return (full, k) if k else (query_ids, 0)


def test_fit_never_exceeds_the_budget_and_drops_whole_exemplars_from_the_end(catalog, vocab):
    rows = real_rows(catalog, "cot_creak", 40)
    rng = random.Random(0)
    for budget in (24, 60, 120, 400):
        for _ in range(20):
            shots = [f"{r.fields['question']}\n{r.fields['answer']}" for r in rng.sample(rows, 4)]
            query = f"Q: {rows[0].fields['question']}"
            lead = "Answer these." if rng.random() < 0.5 else ""
            prompt = FewShotPrompt(lead, tuple(shots), query, "\n\n")
            query_ids = vocab.encode_batch([(lead + "\n\n" + query) if lead else query])[0]
            [(ids, k)] = fit_batch(vocab, [query_ids], [prompt], budget)
            if k:
                assert len(ids) <= budget and ids == vocab.encode_batch([prompt.text(k)])[0]
                assert k == 4 or len(vocab.encode_batch([prompt.text(k + 1)])[0]) > budget
            else:  # nothing fits beside the query: the zero-shot prompt, counted by Tokenize
                assert ids == query_ids


def test_fit_batch_gives_the_one_prompt_answers_for_every_prompt_of_a_batch(catalog, vocab):
    """The batched fit (Tokenize's) against `fit_one`, one prompt and one encode at a time: budgets from nothing fits to
    everything fits, with and without a lead, 0 to 5 exemplars, in one batch."""
    rows = real_rows(catalog, "cot_creak", 40)
    rng = random.Random(1)
    query_ids, prompts = [], []
    for _ in range(120):
        shots = [f"{r.fields['question']}\n{r.fields['answer']}" for r in rng.sample(rows, rng.randint(0, 5))]
        lead = "Answer these." if rng.random() < 0.5 else ""
        prompt = FewShotPrompt(lead, tuple(shots), f"Q: {rng.choice(rows).fields['question']}", rng.choice(["\n\n", "\n"]))
        prompts.append(prompt)
        query_ids.append(vocab.encode_batch([(lead + prompt.separator + prompt.body) if lead else prompt.body])[0])
    kept = set()
    for budget in (8, 40, 90, 160, 250, 1000):
        want = [fit_one(vocab, q, p, budget) for q, p in zip(query_ids, prompts)]
        assert fit_batch(vocab, query_ids, prompts, budget) == want
        kept |= {(k, len(p.shots)) for (_, k), p in zip(want, prompts)}
    assert {k for k, _ in kept} == {0, 1, 2, 3, 4, 5} and any(k < n for k, n in kept)  # every cut, and some drops
    assert fit_batch(vocab, [], [], 100) == []


def test_shared_lead_stops_at_a_paragraph_boundary():
    assert exemplars.shared_lead(["Do X.\n\nInput: a", "Do X.\n\nInput: b\nc"]) == "Do X."
    assert exemplars.shared_lead(["Input: a", "Input: b"]) == ""
    p = assemble("Do X.\n\nInput: a", ["Do X.\n\nInput: b\nB"], "\n---\n", lead_once=True)
    assert p.text(1) == "Do X.\n---\nInput: b\nB\n---\nInput: a"


def test_reuse_summary_reports_max_and_mean_per_collection():
    counts = {**exemplars.reuse_counts("a", [0, 1, 1, 4]), **exemplars.reuse_counts("b", [2, 2])}
    got = exemplars.reuse_summary(counts, {"a": "cot", "b": "niv2"})
    assert got["rows"] == 6 and got["max"] == 4 and got["mean"] == round(10 / 6, 4)
    assert got["per_collection"]["cot"] == {"rows": 4, "max": 4, "mean": 1.5}
