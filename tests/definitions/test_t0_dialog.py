"""T0-SF answer choices appear exactly once in the options settings; dialog turns are chosen as FLAN
does, by a keyed hash of (seed, dataset, row id) instead of FLAN's random draw (issue 13 §4)."""
from __future__ import annotations

import csv
from collections import Counter

import pytest

from pipelines import resources
from pipelines.definitions.catalog import fixture_rows
from pipelines.errors import RenderError
from pipelines.definitions.mixtures import load_mixture, resolve_datasets
from pipelines.definitions.templates import bind_templates, compile_template, render

TYPES = {r["prompt"].lower(): r["task_type"] for r in csv.DictReader(
    open(resources.catalog_dir() / "tools" / "facts" / "t0_prompt_types.csv", encoding="utf-8"))}


def test_t0_prompt_types_decide_which_options_family(catalog):
    kinds = Counter(TYPES.values())
    assert kinds == {"t0_question_answer": 104, "t0_multiple_choice": 70, "t0_multiple_choice_separated_options": 19}
    for entry in catalog.by_collection("t0"):
        kind = TYPES[entry.name]
        expected = {"t0_question_answer": ("t0_prompted",),
                    "t0_multiple_choice": ("t0_prompted", "t0_prompted_inline_options"),
                    "t0_multiple_choice_separated_options": ("t0_prompted", "t0_prompted_options")}[kind]
        assert entry.templates == expected, entry.name
    separated = {e.source_dataset for e in catalog.by_collection("t0")
                 if TYPES[e.name] == "t0_multiple_choice_separated_options"}
    assert {"race_high", "race_middle", "social_i", "wiki_qa"} <= separated


def test_every_t0_options_prompt_shows_its_choices_exactly_once(catalog, families):
    checked = 0
    for entry in catalog.by_collection("t0"):
        if "options" not in entry.template_vars:
            continue
        row = fixture_rows(entry)[0]
        for t in bind_templates(entry.templates, families, entry.template_vars):
            if not t.options:
                continue
            inputs, target = render(compile_template(t), row.fields)
            question = " ".join(row.fields["inputs_pretokenized"].split())
            for choice in row.fields["answer_choices"]:
                shown = inputs.count(choice) - question.count(choice)  # beyond what the P3 text itself shows
                in_total = inputs.count(choice)
                assert in_total >= 1 and shown == (1 if TYPES[entry.name].endswith("separated_options") else 0), (
                    entry.name, t.id, choice, inputs)
            assert target in row.fields["answer_choices"]
            checked += 1
    assert checked == (70 + 19) * 5


def _dialog_pick(catalog, families, name, fields, seed, row_id):
    entry = catalog[name]
    t = next(t for t in bind_templates(entry.templates, families, entry.template_vars) if not t.inversion)
    return render(compile_template(t), fields, (seed, name, row_id))[1]


def test_wiki_dialog_turn_is_a_keyed_choice_among_flans_allowed_turns(catalog, families):
    turns = [f"turn {i}" for i in range(60)]
    fields = dict(fixture_rows(catalog["wiki_dialog"])[1].fields, utterances=["topic line"] + turns)
    picks = {rid: _dialog_pick(catalog, families, "wiki_dialog", fields, 0, rid) for rid in (f"train:{i}" for i in range(400))}
    chosen = {int(p.split()[1]) for p in picks.values()}
    # FLAN: after dropping the first utterance, an odd index below 2 * min(len // 2, 20) = 40.
    assert chosen == set(range(1, 40, 2))
    again = {rid: _dialog_pick(catalog, families, "wiki_dialog", fields, 0, rid) for rid in picks}
    assert again == picks  # same (seed, dataset, row id) -> same turn
    other_seed = {rid: _dialog_pick(catalog, families, "wiki_dialog", fields, 1, rid) for rid in picks}
    assert sum(other_seed[r] != picks[r] for r in picks) > 300


def test_qrecc_keeps_flans_rows_and_builds_from_the_context(catalog, families):
    entry = catalog["qrecc"]
    kept, early = (r.fields for r in fixture_rows(entry)[:2])
    picks = {_dialog_pick(catalog, families, "qrecc", kept, 0, f"train:{i}") for i in range(200)}
    assert picks == {kept["context"][i] for i in range(1, 12, 2)}  # answers only, never the row's own answer
    with pytest.raises(RenderError, match=r"turn_id <= 6"):
        _dialog_pick(catalog, families, "qrecc", early, 0, "train:1")


def test_dialog_submix_is_the_public_recipes(catalog):
    names = {e.name for e in resolve_datasets(load_mixture("dialog_submix"), catalog)}
    assert names == {"wiki_dialog", "qrecc"} and "task_master" in catalog
