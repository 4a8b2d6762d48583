"""Bad input fails early with a message naming what is wrong, or goes to the dead-letter output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.cli import main
from pipelines.errors import CatalogError
from pipelines.definitions.mixtures import load_mixture
from pipelines.planning.plan import make_plan
from pipelines.definitions.templates import load_templates

from conftest import build_corpus, write

ENTRY = """\
schema_version: 1
name: toy_qa
collections: [cot]
task_categories: [Question Answering]
languages: [English]
loader: {{type: cot_tsv, args: {{path: {data}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [toy]
"""

FAMILY = """\
schema_version: 1
family: toy
templates:
  - id: toy_plain
    shots: zero_shot
    options: false
    cot: false
    inputs: "Q: {{{{ question }}}}"
    targets: "{targets}"
"""

MIXTURE = """\
schema_version: 1
name: toy
sequence_length: {inputs: 64, targets: 32}
members: [{dataset: toy_qa}]
"""


def toy_project(tmp: Path, rows: str, targets: str = "{{ answer }}") -> tuple[Path, Path, Path]:
    data = write(tmp / "data" / "toy.tsv", rows)
    write(tmp / "catalog" / "toy_qa.yaml", ENTRY.format(data=data))
    write(tmp / "templates" / "toy.yaml", FAMILY.format(targets=targets))
    mixture = write(tmp / "toy.yaml", MIXTURE)
    return tmp / "catalog", tmp / "templates", mixture


GOOD_ROWS = "What is 2+2?\t4\tTwo and two make four.\nName a color.\tred\tRed is a color.\n"


def test_template_with_undeclared_field_fails_lint_and_build_before_starting(tmp_path, capsys, vocab):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS, targets="{{ solution }}")
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint"]) == 1
    err = capsys.readouterr().err
    assert "toy.yaml" in err and "'toy_plain'" in err and "'solution'" in err and "toy_qa" in err

    out = tmp_path / "out"
    code = main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture), "--output", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and "'solution'" in err and "toy_plain" in err
    assert not out.exists()


def test_template_that_does_not_parse_names_file_id_and_line(tmp_path, capsys):
    cat_dir, tpl_dir, _ = toy_project(tmp_path, GOOD_ROWS, targets="{{ answer ")
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint"]) == 1
    err = capsys.readouterr().err
    assert "toy.yaml" in err and "'toy_plain'" in err and "does not parse" in err and "line 1" in err


def test_catalog_entry_breaking_the_schema_reports_the_json_path(tmp_path):
    write(tmp_path / "bad.yaml", ENTRY.format(data="x.tsv").replace("fields: {question: string", "fields: {question: strng"))
    with pytest.raises(CatalogError, match=r"bad\.yaml.*\$\.fields\.question.*'strng' is not one of"):
        load_catalog(tmp_path)


def test_missing_source_fails_before_the_pipeline_with_a_how_to(tmp_path, vocab):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    (tmp_path / "data" / "toy.tsv").unlink()
    with pytest.raises(Exception, match=r"toy_qa.*no file matches.*toy\.tsv.*Download the data"):
        make_plan(load_mixture(mixture), load_catalog(cat_dir), load_templates(tpl_dir), vocab)


def test_rows_that_cannot_be_rendered_go_to_dead_letter_and_are_counted(tmp_path, vocab):
    rows = GOOD_ROWS + "only one column\n" + "Broken row\t\tNo answer here.\n"
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, rows)
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mixture), num_shards=1)
    records = [json.loads(line) for line in (out / "dead_letter" / "dead_letter-00000-of-00001.jsonl").read_text().splitlines()]
    assert records == [
        {"dataset": "toy_qa", "row_id": "train:3", "stage": "read",
         "reason": "toy.tsv line 3: expected 3 tab-separated columns ['question', 'answer', 'rationale'], found 1", "raw": "only one column"},
        {"dataset": "toy_qa", "row_id": "train:4", "stage": "render", "reason": "template toy_plain: rendered empty targets"},
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    ds = manifest["datasets"]["toy_qa"]
    assert ds["rows_read"] == 4 and ds["examples"] == 2
    assert ds["dead_letter"] == {"read": 1, "render": 1} and manifest["dead_letter"]["count"] == 2


def test_overlong_drop_policy_dead_letters_instead_of_truncating(tmp_path, vocab):
    long_q = " ".join(["word"] * 200)
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS + f"{long_q}\tyes\tBecause.\n")
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mixture), num_shards=1, overlong="drop")
    records = [json.loads(line) for line in (out / "dead_letter" / "dead_letter-00000-of-00001.jsonl").read_text().splitlines()]
    assert [(r["row_id"], r["stage"]) for r in records] == [("train:3", "tokenize")]
    assert records[0]["reason"].startswith("overlong:") and "> 64/32" in records[0]["reason"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"]["toy_qa"]["examples"] == 2 and manifest["datasets"]["toy_qa"]["truncated"] == 0


def test_none_field_from_a_loader_is_a_dead_letter_not_a_crash():
    from pipelines.definitions.fieldtypes import field_problem

    assert field_problem({"question": None, "answer": "a", "rationale": "r"}, {"question": "string", "answer": "string", "rationale": "string"}) == "field 'question' is None"
    assert field_problem({"question": 3}, {"question": "string"}) == "field 'question' should be string, got int"
    assert field_problem({}, {"question": "string"}) == "field 'question' is missing"


def test_unknown_mixture_lists_known_ones(capsys):
    assert main(["build", "--mixture", "no_such_mix", "--output", "/tmp/x"]) == 2
    assert "known mixtures" in capsys.readouterr().err


def test_template_cannot_escape_the_sandbox(tmp_path, vocab):
    from pipelines.errors import RenderError
    from pipelines.definitions.templates import Template, compile_template, render

    t = Template("evil", "toy", "zero_shot", False, False, "{{ question.__class__.__mro__ }}", "{{ answer }}")
    with pytest.raises(RenderError):
        render(compile_template(t), {"question": "q", "answer": "a"})
