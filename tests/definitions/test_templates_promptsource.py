"""`flanmix templates import-promptsource` on a small promptsource-format file written here."""
from __future__ import annotations

import pytest
import yaml

from pipelines.cli import main
from pipelines.errors import RenderError, TemplateError
from pipelines.definitions.promptsource_import import convert, split_jinja
from pipelines.definitions.templates import compile_template, load_family, render_with_choices

from conftest import write

# promptsource layout (tags, uuid keys, metadata); the prompt wording is made up for this test.
PS_YAML = """\
dataset: toy_glue
subset: pairs
templates:
  0f6c1a9e-0000-4000-8000-000000000001: !Template
    answer_choices: different ||| same
    id: 0f6c1a9e-0000-4000-8000-000000000001
    jinja: 'One: {{s1}}

      Two: {{s2}}

      Same meaning? {{ answer_choices | join(" or ") }} ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      choices_in_prompt: true
      languages: [en]
      metrics: [Accuracy]
      original_task: true
    name: same meaning?
    reference: ''
  0f6c1a9e-0000-4000-8000-000000000002: !Template
    answer_choices: null
    id: 0f6c1a9e-0000-4000-8000-000000000002
    jinja: '{% if label == 1 %}Write a rewording of: {{s1}} ||| {{s2}}{% endif %}'
    metadata: !TemplateMetadata
      choices_in_prompt: false
      original_task: false
    name: Rewrite
    reference: ''
  0f6c1a9e-0000-4000-8000-000000000003: !Template
    id: 0f6c1a9e-0000-4000-8000-000000000003
    jinja: 'No target here: {{s1}}'
    name: broken
"""


def test_split_ignores_bars_inside_jinja():
    assert split_jinja("A {{ x | join('|||') }} ||| B") == ("A {{ x | join('|||') }} ", " B")
    assert split_jinja("no split") is None


def test_convert_to_a_valid_family_and_render():
    family, skipped = convert(PS_YAML, "toy/templates.yaml")
    assert family["family"] == "ps_toy_glue_pairs"
    assert [t["id"] for t in family["templates"]] == ["ps_toy_glue_pairs_rewrite", "ps_toy_glue_pairs_same_meaning"]
    same = family["templates"][1]
    assert same["options"] is True and same["answer_choices"] == "different ||| same"
    assert same["inputs"] == 'One: {{s1}}\nTwo: {{s2}}\nSame meaning? {{ answer_choices | join(" or ") }}'
    assert same["targets"] == "{{ answer_choices[label] }}"
    assert "0f6c1a9e-0000-4000-8000-000000000001" in same["note"]
    assert skipped == ["'broken': no inputs ||| targets split"]


def test_cli_writes_a_family_that_loads_and_renders(tmp_path, capsys):
    src = write(tmp_path / "ps" / "templates.yaml", PS_YAML)
    out = tmp_path / "templates"
    assert main(["templates", "import-promptsource", str(src), "--output", str(out), "--family", "toy_pairs"]) == 0
    assert "wrote" in capsys.readouterr().out
    fam = load_family(out / "toy_pairs.yaml")
    same = next(t for t in fam.templates if t.id == "toy_pairs_same_meaning")
    row = {"s1": "The cat sat.", "s2": "A cat was sitting.", "label": 1}
    assert render_with_choices(compile_template(same), row) == (
        "One: The cat sat.\nTwo: A cat was sitting.\nSame meaning? different or same", "same", ["different", "same"])
    rewrite = next(t for t in fam.templates if t.id == "toy_pairs_rewrite")
    assert "promptsource_part(0)" in rewrite.inputs  # its {% if %} spans the split: rendered whole, then split
    assert render_with_choices(compile_template(rewrite), row) == ("Write a rewording of: The cat sat.", "A cat was sitting.", None)
    with pytest.raises(RenderError, match="rendered empty inputs"):  # not applicable to this row, as in promptsource
        render_with_choices(compile_template(rewrite), {**row, "label": 0})
    assert main(["templates", "import-promptsource", str(src), "--output", str(out), "--family", "toy_pairs"]) == 2
    assert "exists" in capsys.readouterr().err


def test_not_a_promptsource_file():
    with pytest.raises(TemplateError, match="no `templates:` mapping"):
        convert(yaml.safe_dump({"dataset": "x"}), "x.yaml")
