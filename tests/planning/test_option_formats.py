"""Option formats (pipelines/planning/option_formats.py): a documented set, chosen by keyed hash per copy,
laid out by `{{ options_block }}`, with marker answers at the configured share."""
from __future__ import annotations

import collections

import pytest

from pipelines.definitions.catalog import fixture_rows
from pipelines.planning import option_formats
from pipelines.planning.option_formats import FORMATS, answer, marker_answer, pick_format, render_block
from pipelines.definitions.templates import Template, bind_templates, compile_template, render, render_with_choices

CHOICES = ["Yes", "It's impossible to say", "No"]


def test_at_least_a_dozen_distinct_documented_formats():
    assert len(FORMATS) >= 12
    blocks = {render_block(CHOICES, f) for f in FORMATS}
    assert len(blocks) == len(FORMATS)  # every format lays the choices out differently
    kinds = {(bool(f.prefix), f.enumerated, f.inline, f.labels, f.end) for f in FORMATS}
    assert {f.labels for f in FORMATS} >= {"", "a", "A", "1", "i", "I"}  # bullets, letters, numbers, roman
    assert {f.inline for f in FORMATS} == {True, False} and {f.end for f in FORMATS} >= {"", ";", "."}
    assert len(kinds) > 12
    assert render_block(["yes", "no"], FORMATS[0]) == "Options:\n- yes\n- no"  # the default layout
    assert render_block(["yes", "no"], option_formats.by_name("options_paren_lower_inline")) == "Options: (a) yes (b) no"
    assert render_block(["yes", "no"], option_formats.by_name("options_roman_upper_paren_lines")) == "OPTIONS:\n(I) yes\n(II) no"


def test_choice_is_deterministic_and_varied():
    keys = [f"train:{i}" for i in range(4800)]
    got = [pick_format(0, "anli_r1", k).name for k in keys]
    assert got == [pick_format(0, "anli_r1", k).name for k in keys]
    counts = collections.Counter(got)
    assert len(counts) == len(FORMATS) and max(counts.values()) < 2 * min(counts.values())
    assert got != [pick_format(1, "anli_r1", k).name for k in keys]  # the seed changes them
    assert got != [pick_format(0, "anli_r2", k).name for k in keys]


def test_marker_answers_only_for_enumerated_formats_at_the_configured_share():
    enumerated = [f for f in FORMATS if f.enumerated]
    bullets = [f for f in FORMATS if not f.enumerated]
    keys = [f"k{i}" for i in range(4000)]
    assert not any(marker_answer(0, "t", k, bullets[0], 1.0) for k in keys)
    share = sum(marker_answer(0, "t", k, enumerated[0], 0.5) for k in keys) / len(keys)
    assert abs(share - 0.5) < 0.03
    assert not any(marker_answer(0, "t", k, enumerated[0], 0.0) for k in keys)
    for f in enumerated:
        labels = [answer(f, i, len(CHOICES)) for i in range(len(CHOICES))]
        assert len(set(labels)) == len(labels) and all(lab in render_block(CHOICES, f) for lab in labels)


OPT_TEMPLATE = Template(
    "nli_opt_block_test", "nli_test", "zero_shot", True, False,
    "{{ premise }}\nDoes this follow: {{ hypothesis }}?\n\n{{ options_block }}", "{{ answer }}",
    answer_choices="{{ options | join('|||') }}",
)
LOOP_TEMPLATE = Template(
    "nli_opt_loop_test", "nli_test", "zero_shot", True, False,
    "{{ premise }} / {{ hypothesis }}\n{% for o in answer_choices %}* {{ o }}\n{% endfor %}", "{{ answer }}",
    answer_choices="{{ options | join('|||') }}",
)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_render_places_the_format_and_a_marker_target_on_real_fixture_rows(catalog, fmt):
    entry = catalog["anli_r1"]
    row = fixture_rows(entry)[0]
    t = bind_templates(["x"], {"x": type("F", (), {"templates": (OPT_TEMPLATE,)})()}, entry.template_vars)[0]
    ct = compile_template(t)
    inputs, targets, choices = render_with_choices(ct, row.fields, option_format=fmt, marker_answer=True)
    assert inputs.endswith(render_block(choices, fmt)) and choices == CHOICES
    gold = CHOICES[row.fields["label"]]
    assert targets == (answer(fmt, CHOICES.index(gold), 3) if fmt.enumerated else gold)
    assert render(ct, row.fields, option_format=fmt, marker_answer=False)[1] == gold


def test_templates_with_their_own_layout_keep_the_choice_text_as_target(catalog):
    entry = catalog["anli_r1"]
    row = fixture_rows(entry)[0]
    t = bind_templates(["x"], {"x": type("F", (), {"templates": (LOOP_TEMPLATE,)})()}, entry.template_vars)[0]
    fmt = option_formats.by_name("choices_upper_dot_lines")
    inputs, targets = render(compile_template(t), row.fields, option_format=fmt, marker_answer=True)
    assert targets == CHOICES[row.fields["label"]] and "* Yes" in inputs


def test_manifest_counts_options_blocks_per_format():
    counts = {("option_format", "none_hyphen_lines"): 3, ("option_format", "choices_upper_dot_lines"): 2,
              ("option_marker_answer",): 1, ("template", "x"): 9}
    got = option_formats.format_counts(counts)
    assert got["used"] == {"choices_upper_dot_lines": 2, "none_hyphen_lines": 3}
    assert got["blocks"] == 5 and got["marker_answers"] == 1 and got["formats_available"] == len(FORMATS)


CREAK_ENTRY = """\
schema_version: 1
name: creak_opts
description: The shipped creak CoT rows, answered from yes/no choices laid out by the build.
collections: [flan2021]
task_categories: [Fact Verification]
languages: [English]
loader: {{type: cot_tsv, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [opts_test]
"""
OPTS_FAMILY = """\
schema_version: 1
family: opts_test
templates:
  - id: opts_test_claim
    shots: zero_shot
    options: true
    cot: false
    answer_choices: "yes ||| no"
    inputs: |-
      {{ question.split('Options:')[0].strip() }}

      {{ options_block }}
    targets: "{{ answer }}"
  - id: opts_test_claim_plain
    shots: zero_shot
    options: false
    cot: false
    inputs: "{{ question.split('Options:')[0].strip() }} Yes or no?"
    targets: "{{ answer }}"
"""


def test_a_build_varies_option_formats_and_counts_them(tmp_path, vocab):
    import json

    from pipelines import resources
    from pipelines.definitions.catalog import load_catalog
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.definitions.templates import load_templates
    from pipelines.planning.plan import BuildOptions, make_plan
    from pipelines.runner.graph import run_build

    data = resources.catalog_dir() / "data" / "cot" / "creak_train.tsv"  # real shipped rows
    assert data.exists(), data
    (tmp_path / "catalog").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "catalog" / "creak_opts.yaml").write_text(CREAK_ENTRY.format(path=data))
    (tmp_path / "templates" / "opts_test.yaml").write_text(OPTS_FAMILY)
    (tmp_path / "m.yaml").write_text("schema_version: 1\nname: m\nsequence_length: {inputs: 512, targets: 64}\n"
                                     "prompt_settings: {zs_opt: 0.5, fs_opt: 0.5}\noption_marker_answers: 0.5\n"
                                     "few_shot: {min_exemplars: 2, max_exemplars: 2, group_size: 32}\n"
                                     "members: [{dataset: creak_opts}]\n")
    plan = make_plan(load_mixture(tmp_path / "m.yaml"), load_catalog(tmp_path / "catalog"),
                     load_templates(tmp_path / "templates"), vocab, BuildOptions(num_shards=1, output_format="jsonl"))
    run_build(plan, vocab.model_proto, str(tmp_path / "out"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    opts = manifest["mixing"]["option_formats"]
    assert opts["blocks"] == 300 and opts["distinct_used"] >= 20
    enumerated = sum(v for name, v in opts["used"].items() if option_formats.by_name(name).enumerated)
    assert 0.35 < opts["marker_answers"] / enumerated < 0.65
    records = [json.loads(line) for p in (tmp_path / "out" / "jsonl").glob("*.jsonl") for line in p.read_text().splitlines()]
    markers = [r for r in records if r["targets"] not in ("yes", "no")]
    assert len(markers) == opts["marker_answers"]
    for r in markers:  # the marker names the right choice in the block the prompt shows
        fmt = next(f for f in FORMATS if f.enumerated and r["inputs"].endswith(render_block(["yes", "no"], f)))
        assert r["targets"] in (answer(fmt, 0), answer(fmt, 1))
        if r["prompt_setting"] == "fs_opt":  # exemplars share the query's format and answer style
            assert r["inputs"].count(render_block(["yes", "no"], fmt)) == 3
