"""JSONL / CSV / Parquet row files through the same plan + read path a build uses."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import LoaderError
from pipelines.loaders import get_loader, offline_ready


def read_all(loader_type, args, split="train", source="train"):
    loader = get_loader(loader_type)
    return [row for shard in loader.plan("toy", split, source, args) for row in loader.read(shard)]


def test_jsonl_rows_keep_types_and_get_line_ids(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps({"q": "2+2?", "a": "4", "n": 4, "tags": ["math"]}) + "\n\n"
        + "not json\n" + json.dumps([1, 2]) + "\n" + json.dumps({"q": "Sky?", "a": "blue", "n": 0, "tags": []}) + "\n",
        encoding="utf-8",
    )
    rows = read_all("jsonl", {"path": str(tmp_path / "{split}.jsonl")})
    assert [(r.row_id, r.fields, r.error) for r in rows] == [
        ("train.jsonl:1", {"q": "2+2?", "a": "4", "n": 4, "tags": ["math"]}, None),
        ("train.jsonl:3", None, "train.jsonl line 3: not valid JSON: Expecting value (column 1)"),
        ("train.jsonl:4", None, "train.jsonl line 4: a JSON list, not an object"),
        ("train.jsonl:5", {"q": "Sky?", "a": "blue", "n": 0, "tags": []}, None),
    ]
    assert rows[1].raw == "not json"


def test_jsonl_id_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x1", "q": "a"}\n{"q": "b"}\n', encoding="utf-8")
    rows = read_all("jsonl", {"path": str(tmp_path / "a.jsonl"), "id_field": "id"})
    assert [(r.row_id, r.error) for r in rows] == [("x1", None), ("a.jsonl:2", "row has no value in id_field 'id'")]


def test_csv_with_header_and_headerless_tsv(tmp_path):
    (tmp_path / "rows.csv").write_text('question,answer\n"Hi, there?",yes\nbad\n', encoding="utf-8")
    rows = read_all("csv", {"path": str(tmp_path / "rows.csv")})
    assert rows[0].row_id == "rows.csv:0" and rows[0].fields == {"question": "Hi, there?", "answer": "yes"}
    assert rows[1].fields is None and "columns ['question', 'answer']" in rows[1].error

    (tmp_path / "code.tsv").write_text('puts("hi)\tputs("hi");\n', encoding="utf-8")
    args = {"path": str(tmp_path / "code.tsv"), "delimiter": "\t", "columns": ["broken", "fixed"], "quote": ""}
    rows = read_all("csv", args)
    assert [(r.row_id, r.fields) for r in rows] == [("code.tsv:0", {"broken": 'puts("hi)', "fixed": 'puts("hi");'})]


def test_parquet_files_are_shards_with_typed_rows(tmp_path):
    for i, names in enumerate((["ada", "bo"], ["cy"])):
        table = pa.table({"name": names, "age": list(range(len(names))), "pets": [["cat"]] * len(names)})
        pq.write_table(table, tmp_path / f"part-{i}.parquet")
    loader = get_loader("parquet")
    shards = loader.plan("toy", "train", "train", {"path": str(tmp_path / "*.parquet")})
    assert [s.index for s in shards] == [0, 1] and all(s.size_bytes > 0 for s in shards)
    rows = [r for s in shards for r in loader.read(s)]
    assert [(r.row_id, r.fields) for r in rows] == [
        ("part-0.parquet:0", {"name": "ada", "age": 0, "pets": ["cat"]}),
        ("part-0.parquet:1", {"name": "bo", "age": 1, "pets": ["cat"]}),
        ("part-1.parquet:0", {"name": "cy", "age": 0, "pets": ["cat"]}),
    ]


def test_missing_files_fail_with_what_was_tried_and_the_hint(tmp_path):
    with pytest.raises(LoaderError) as err:
        read_all("jsonl", {"path": str(tmp_path / "nope" / "*.jsonl"), "hint": "ask the data owner for a copy"})
    message = str(err.value)
    assert "no file matches" in message and "nope" in message and "local copy" in message
    assert "ask the data owner for a copy" in message
    assert not offline_ready("jsonl", {"path": str(tmp_path / "nope" / "*.jsonl")})


def test_unreachable_url_fails_fast_and_says_how_to_provide_data():
    with pytest.raises(LoaderError) as err:
        read_all("jsonl", {"path": "http://127.0.0.1:9/data/train.jsonl"})
    assert "tried to reach http://127.0.0.1:9/data/train.jsonl" in str(err.value)
    assert "local copy" in str(err.value)


def test_file_loaders_do_not_slice_splits(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(LoaderError, match="does not slice"):
        read_all("jsonl", {"path": str(tmp_path / "train.jsonl")}, source="train[:10]")
