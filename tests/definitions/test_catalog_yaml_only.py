"""The template author's path: a new dataset needs only a catalog entry, a template family and data
files (task_catalog/README.md, "Adding a dataset"). Everything here lives in a temp directory."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.definitions.catalog import load_catalog  # noqa: E402
from pipelines.cli import main  # noqa: E402
from pipelines.definitions.lint import lint_catalog  # noqa: E402
from flanmix_corpus.reader import read_manifest  # noqa: E402
from pipelines.definitions.templates import load_templates  # noqa: E402

from conftest import build_corpus, write  # noqa: E402

ENTRY = """\
schema_version: 1
name: capitals
description: Country -> capital pairs written for this test.
collections: [flan2021]
task_categories: [Closed-Book QA, Inverted Closed-Book QA]
inversion_categories: [Inverted Closed-Book QA]
languages: [English]
default_cap: 100
loader:
  type: jsonl
  args: {path: "data/{split}.jsonl", id_field: id}
splits: {train: train}
fields: {id: string, country: string, capital: string}
template_vars:
  question: "'What is the capital of ' ~ country ~ '?'"
  answer: capital
templates: [capital_qa]
fixtures:
  - fields: {id: fx1, country: Chile, capital: Santiago}
"""

FAMILY = """\
schema_version: 1
family: capital_qa
templates:
  - id: capital_qa_ask
    shots: zero_shot
    options: false
    cot: false
    inputs: "{{ question }}"
    targets: "{{ answer }}"
  - id: capital_qa_inverted
    shots: zero_shot
    options: false
    cot: false
    inversion: true
    inputs: "Write a question whose answer is {{ answer }}."
    targets: "{{ question }}"
"""

HF_ENTRY = """\
schema_version: 1
name: rivers
collections: [flan2021]
task_categories: [Closed-Book QA]
languages: [English]
loader:
  type: hf_datasets
  args: {path: hf_rivers}
splits: {train: "train[1:]"}
fields: {river: string, sea: string}
template_vars:
  question: "'Into which sea does the ' ~ river ~ ' flow?'"
  answer: sea
templates: [capital_qa]
fixtures:
  - fields: {river: Po, sea: Adriatic Sea}
"""

MIXTURE = """\
schema_version: 1
name: capitals_only
sequence_length: {inputs: 64, targets: 32}
members: [{dataset: capitals}, {dataset: rivers}]
"""

ROWS = [("c1", "France", "Paris"), ("c2", "Japan", "Tokyo"), ("c3", "Kenya", "Nairobi"), ("c4", "Peru", "Lima")]


def author_project(tmp_path):
    write(tmp_path / "catalog" / "capitals.yaml", ENTRY)
    write(tmp_path / "catalog" / "data" / "train.jsonl",
          "".join(json.dumps({"id": i, "country": c, "capital": k}) + "\n" for i, c, k in ROWS))
    write(tmp_path / "templates" / "capital_qa.yaml", FAMILY)
    write(tmp_path / "catalog" / "rivers.yaml", HF_ENTRY)  # a Hugging Face save_to_disk folder, sliced
    import datasets

    datasets.Dataset.from_dict({"river": ["Rhine", "Danube", "Volga"], "sea": ["North Sea", "Black Sea", "Caspian Sea"]}).save_to_disk(
        str(tmp_path / "catalog" / "hf_rivers"))
    return tmp_path / "catalog", tmp_path / "templates", write(tmp_path / "capitals_only.yaml", MIXTURE)


def test_new_dataset_from_yaml_only_lints_previews_and_builds(tmp_path, capsys, vocab):
    cat_dir, tpl_dir, mixture = author_project(tmp_path)
    catalog, families = load_catalog(cat_dir), load_templates(tpl_dir)
    assert catalog["capitals"].tasks == ("capitals:Closed-Book QA", "capitals:Inverted Closed-Book QA")
    assert lint_catalog(catalog, families) == []

    base = ["--catalog", str(cat_dir), "--templates", str(tpl_dir)]
    assert main(base + ["templates", "lint"]) == 0
    assert main(base + ["templates", "preview", "capitals", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "=== capitals row c1 | template capital_qa_ask" in out and "What is the capital of France?" in out
    assert "=== capitals row c2 | template capital_qa_inverted" in out and "Write a question whose answer is Tokyo." in out

    corpus = tmp_path / "out"
    build_corpus(corpus, catalog, families, vocab, mixture=str(mixture), num_shards=1)
    manifest = read_manifest(str(corpus))
    assert manifest["datasets"]["capitals"]["rows_read"] == 4
    assert manifest["datasets"]["capitals"]["examples"] == 4
    assert manifest["datasets"]["rivers"]["rows_read"] == 2  # train[1:] of 3 rows
