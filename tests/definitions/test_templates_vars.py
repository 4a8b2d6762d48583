"""Template families shared across datasets: per-entry template_vars, drop(), raw, option checks."""
from __future__ import annotations

import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.errors import RenderError
from pipelines.definitions.lint import lint_catalog
from pipelines.definitions.templates import Template, bind_templates, compile_template, load_templates, render, render_with_choices

from conftest import write

FAMILY = """\
schema_version: 1
family: yesno
templates:
  - id: yesno_opt
    shots: zero_shot
    options: true
    cot: false
    answer_choices: "{{ options | join('|||') }}"
    inputs: "{{ claim }} Options: {{ answer_choices | join(', ') }}"
    targets: "{{ answer }}"
  - id: yesno_noopt
    shots: zero_shot
    options: false
    cot: false
    inputs: "True or not? {{ claim }}"
    targets: "{{ answer }}"
"""

ENTRY = """\
schema_version: 1
name: toy_claims
collections: [flan2021]
task_categories: [Fact Checking, Inverted Fact Checking]
inversion_categories: [Inverted Fact Checking]
languages: [English]
loader: {{type: jsonl, args: {{path: data.jsonl}}}}
splits: {{train: train}}
fields: {{statement: string, label: int}}
template_vars:
{vars}
templates: [yesno]
fixtures:
  - fields: {{statement: "Water boils at 100 C at sea level.", label: 1}}
"""

GOOD_VARS = """\
  claim: statement
  options: "['no', 'yes']"
  answer: "options[label] if label in [0, 1] else drop('label ' ~ label ~ ' is not 0/1')"
"""


def project(tmp_path, variables=GOOD_VARS):
    write(tmp_path / "templates" / "yesno.yaml", FAMILY)
    write(tmp_path / "catalog" / "toy_claims.yaml", ENTRY.format(vars=variables))
    write(tmp_path / "catalog" / "data.jsonl", '{"statement": "The moon is made of cheese.", "label": 0}\n')
    return load_catalog(tmp_path / "catalog"), load_templates(tmp_path / "templates")


def test_variables_map_raw_fields_onto_family_variables(tmp_path):
    catalog, families = project(tmp_path)
    entry = catalog["toy_claims"]
    assert entry.forward_categories == ("Fact Checking",)
    opt, noopt = (compile_template(t) for t in bind_templates(entry.templates, families, entry.template_vars))
    row = {"statement": "The moon is made of cheese.", "label": 0}
    assert render_with_choices(opt, row) == ("The moon is made of cheese. Options: no, yes", "no", ["no", "yes"])
    assert render(noopt, row) == ("True or not? The moon is made of cheese.", "no")
    with pytest.raises(RenderError, match="template yesno_opt: row dropped: label 7 is not 0/1"):
        render(opt, {"statement": "x", "label": 7})
    assert lint_catalog(catalog, families) == []


def test_lint_rejects_variables_that_read_undeclared_fields(tmp_path):
    catalog, families = project(tmp_path, GOOD_VARS.replace("claim: statement", "claim: sentence"))
    problems = [str(p) for p in lint_catalog(catalog, families)]
    assert len(problems) == 1
    assert "template_vars.claim reads 'sentence', which is neither a declared field" in problems[0]
    assert "toy_claims.yaml" in problems[0]


def test_lint_rejects_templates_reading_unbound_variables(tmp_path):
    catalog, families = project(tmp_path, "  claim: statement\n  answer: \"'yes'\"\n")
    problems = [str(p) for p in lint_catalog(catalog, families)]
    assert any("template 'yesno_opt' (answer_choices) references field 'options'" in p for p in problems)


def test_lint_reports_a_target_that_is_not_an_option(tmp_path):
    catalog, families = project(tmp_path, GOOD_VARS.replace("\"['no', 'yes']\"", "\"['false', 'true']\"").replace(
        "options[label] if label in [0, 1] else drop('label ' ~ label ~ ' is not 0/1')", "'yes'"))
    problems = [str(p) for p in lint_catalog(catalog, families)]
    assert any("target 'yes' is not one of the 2 answer choices" in p for p in problems)


def test_raw_reads_fields_whose_names_are_not_identifiers():
    t = Template(id="t", family="f", shots="zero_shot", options=False, cot=False, inputs="{{ q }}", targets="{{ a }}",
                 variables=(("q", "text"), ("a", "['x', 'y'][raw['label-coarse']]")))
    assert render(compile_template(t), {"text": "Why?", "label-coarse": 1}) == ("Why?", "y")


def test_a_family_without_vars_renders_as_before():
    """Entries without template_vars (every schema_version 1 entry before) render unchanged."""
    families = load_templates()
    t = families["cot_qa"].templates[-1]
    assert bind_templates(["cot_qa"], families, {})[-1] is t
    assert render(compile_template(t), {"question": "2+2?", "answer": "4", "rationale": "r"}) == ("Q: 2+2?\nA:", "4")
