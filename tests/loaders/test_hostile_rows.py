"""Issue 16: rows are split only at newlines, a bad row costs that row only, and the ledger holds
against the file itself: non-empty lines = examples written + counted drops + dead letters."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.cli import main
from pipelines.loaders.base import SourceShard
from pipelines.loaders.cot_tsv import CotTsvLoader
from pipelines.loaders.tabular import read_jsonl_rows
from pipelines.definitions.templates import load_templates

from conftest import build_corpus, write
from test_bad_input import GOOD_ROWS, toy_project

BIG_INT = "1" * 5000
DEEP = "[" * 100_000 + "]" * 100_000

# Every hostile case in one JSONL file (bytes, as written to disk); "id" is the id_field.
JSONL_LINES = [
    b'\xef\xbb\xbf{"id": "r1", "q": "BOM before me", "a": "yes"}',            # 1 BOM: a row
    '{"id": "r2", "q": "one\u2028record", "a": "yes"}'.encode(),               # 2 U+2028 inside: a row
    '{"id": "r3", "q": "one\u0085record", "a": "yes"}'.encode(),               # 3 U+0085 inside: a row
    b'{"id": "r4", "q": "windows", "a": "yes"}\r',                              # 4 CRLF: a row
    b'{"id": "r5", "q": "bad \xff byte", "a": "yes"}',                          # 5 dead: not UTF-8
    ('{"id": "r6", "q": "big", "a": ' + BIG_INT + '}').encode(),                # 6 dead: 5000 digits
    ('{"id": "r7", "q": ' + DEEP + ', "a": "x"}').encode(),                     # 7 dead: 100k deep
    b"   ",                                                                     # 8 dead: whitespace only
    b"",                                                                        # 9 empty: not a record
    b'{"id": "r1", "q": "again", "a": "yes"}',                                  # 10 dead: duplicate id
    b'{"id": "r11", "q": "broken"',                                             # 11 dead: not JSON
    b'["an", "array"]',                                                         # 12 dead: not an object
]
JSONL = b"\n".join(JSONL_LINES) + b"\n"

JSONL_ENTRY = """\
schema_version: 1
name: toy_jsonl
collections: [cot]
task_categories: [Question Answering]
languages: [English]
loader: {{type: jsonl, args: {{path: {data}, id_field: id}}}}
splits: {{train: train}}
fields: {{q: string, a: string}}
templates: [toyj]
"""
JSONL_FAMILY = """\
schema_version: 1
family: toyj
templates:
  - {id: toyj_plain, shots: zero_shot, options: false, cot: false, inputs: "Q: {{ q }}", targets: "{{ a }}"}
"""
JSONL_MIXTURE = """\
schema_version: 1
name: toyj
sequence_length: {inputs: 64, targets: 32}
members: [{dataset: toy_jsonl}]
"""


def _jsonl_project(tmp: Path) -> tuple[Path, Path, Path]:
    data = tmp / "data" / "rows.jsonl"
    data.parent.mkdir(parents=True)
    data.write_bytes(JSONL)
    write(tmp / "catalog" / "toy_jsonl.yaml", JSONL_ENTRY.format(data=data))
    write(tmp / "templates" / "toyj.yaml", JSONL_FAMILY)
    return tmp / "catalog", tmp / "templates", write(tmp / "toyj.yaml", JSONL_MIXTURE)


def test_jsonl_reasons_name_file_line_and_cause():
    rows = list(read_jsonl_rows("train", "rows.jsonl", JSONL, "id"))
    assert [r.row_id for r in rows if r.error is None] == ["r1", "r2", "r3", "r4", "r1"]  # r1 twice: see below
    assert rows[1].fields["q"] == "one\u2028record" and rows[2].fields["q"] == "one\u0085record"
    errors = {r.row_id: r.error for r in rows if r.error}
    assert errors == {
        "rows.jsonl:5": "rows.jsonl line 5: byte 23 is not UTF-8 (invalid start byte)",
        "rows.jsonl:6": "rows.jsonl line 6: JSON value Python refuses: Exceeds the limit (4300 digits) for integer "
                        "string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
        "rows.jsonl:7": "rows.jsonl line 7: JSON nested too deeply to read",
        "rows.jsonl:8": "rows.jsonl line 8: blank (whitespace only)",
        "rows.jsonl:11": "rows.jsonl line 11: not valid JSON: Expecting ',' delimiter (column 28)",
        "rows.jsonl:12": "rows.jsonl line 12: a JSON list, not an object",
    }
    assert len(rows) == 11  # the empty line 9 is no record; the duplicate r1 is caught by the build


def test_jsonl_ledger_holds_against_the_file(tmp_path, vocab):
    cat_dir, tpl_dir, mixture = _jsonl_project(tmp_path)
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mixture), num_shards=1)
    manifest = json.loads((out / "manifest.json").read_text())
    ds = manifest["datasets"]["toy_jsonl"]
    records_in_file = sum(1 for line in JSONL.split(b"\n") if line.rstrip(b"\r"))  # non-empty lines
    assert records_in_file == 11
    drops = manifest["mixing"]["collections"]["cot"].get("downsampled", 0) if manifest.get("mixing") else 0
    dead = sum(ds["dead_letter"].values())
    assert (ds["examples"], drops, dead) == (4, 0, 7)
    assert ds["examples"] + drops + dead == records_in_file == ds["rows_read"]
    dead_records = [json.loads(line) for line in (out / "dead_letter" / "dead_letter-00000-of-00001.jsonl").read_text().splitlines()]
    assert {r["row_id"]: r["reason"] for r in dead_records}["r1"] == "duplicate row id 'r1' (first seen as row 1 of this source file)"


TSV = (
    "\ufeffQ1 with a BOM before it\tA1\tR1\n"          # 1 a row; the BOM is not in the question
    "Q2 has a \f form feed\tA2\tR2\n"                  # 2 a row (splitlines split here)
    "Q3 has a \u2028 separator\tA3\tR3\r\n"            # 3 a row, CRLF
    "  \t \t \n"                                       # 4 dead: whitespace only (vanished uncounted)
    "\n"                                               # 5 empty: not a record
    "only one column\n"                                # 6 dead: columns
).encode() + b"Q7 \xfe bad\tA7\tR7\n"                  # 7 dead: not UTF-8


def test_tsv_rows_split_only_at_newlines_and_the_ledger_holds(tmp_path, vocab):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, "")
    (tmp_path / "data" / "toy.tsv").write_bytes(TSV)
    shard = SourceShard("toy_qa", "train", "cot_tsv", {"path": str(tmp_path / "data" / "toy.tsv")})
    rows = list(CotTsvLoader().read(shard))
    assert [(r.row_id, r.fields["question"]) for r in rows if r.error is None] == [
        ("train:1", "Q1 with a BOM before it"), ("train:2", "Q2 has a \f form feed"), ("train:3", "Q3 has a \u2028 separator")]
    assert [(r.row_id, r.error) for r in rows if r.error] == [
        ("train:4", "toy.tsv line 4: blank (whitespace only)"),
        ("train:6", "toy.tsv line 6: expected 3 tab-separated columns ['question', 'answer', 'rationale'], found 1"),
        ("train:7", "toy.tsv line 7: byte 3 is not UTF-8 (invalid start byte)"),
    ]
    assert CotTsvLoader().count_rows(shard) == 3
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mixture), num_shards=1)
    ds = json.loads((out / "manifest.json").read_text())["datasets"]["toy_qa"]
    assert (ds["rows_read"], ds["examples"], ds["dead_letter"]) == (6, 3, {"read": 3})


def test_template_failing_on_every_row_fails_the_build_and_publishes_nothing(tmp_path, capsys):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS, targets="{{ answer.nope }}")
    out = tmp_path / "out"
    argv = ["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture), "--output", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == ("flanmix: error: every row of a dataset became a dead letter: dataset toy_qa lost all 2 rows "
                   "(see dead_letter/; --max_dead_letter_fraction 1 publishes anyway); nothing was published")
    assert not (out / "manifest.json").exists()
    assert main(argv + ["--max_dead_letter_fraction", "1"]) == 0
    assert json.loads((out / "manifest.json").read_text())["dead_letter"]["count"] == 2


def test_max_dead_letter_fraction_per_dataset(tmp_path, capsys):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS + "only one column\n")
    out = tmp_path / "out"
    argv = ["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture), "--output", str(out)]
    assert main(argv + ["--max_dead_letter_fraction", "0.2"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "flanmix: error: dead letters over --max_dead_letter_fraction 0.2: dataset toy_qa lost 1 of 3 (0.333); "
        "nothing was published")
    assert not (out / "manifest.json").exists()
    assert main(argv + ["--max_dead_letter_fraction", "0.5"]) == 0


@pytest.mark.parametrize("value", ["nan", "1.5", "-0.1"])
def test_max_dead_letter_fraction_is_checked_before_the_job(tmp_path, capsys, value):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    argv = ["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture),
            "--output", str(tmp_path / "out"), "--max_dead_letter_fraction", value]
    assert main(argv) == 2
    assert "--max_dead_letter_fraction must be a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
