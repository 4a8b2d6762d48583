"""Hugging Face datasets: `load_dataset("parquet"/"json", data_files=...)` on our shards, offline."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from pipelines.formats import layouts as features  # noqa: E402
from pipelines.consumers import hf  # noqa: E402


@pytest.mark.parametrize("corpus", ["demo_corpus", "decoder_corpus"])
def test_load_dataset_parquet_returns_the_written_rows(corpus, request, tmp_path):
    out, _ = request.getfixturevalue(corpus)
    layout = json.loads((out / "manifest.json").read_text())["layout"]
    files = sorted(str(p) for p in (out / "parquet").glob("*.parquet"))
    written = [r for p in files for r in pq.read_table(p).to_pylist()]
    plain = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "a"))
    assert plain.to_list() == written  # the builder alone, no flanmix code
    ds = hf.load_corpus(str(out), cache_dir=str(tmp_path / "b"))
    assert ds.features == hf.hf_features(layout)
    assert list(ds.features) == [*features.int_features(layout), "provenance"]
    assert ds.to_list() == written


def test_load_text_returns_the_jsonl_records(text_corpus, tmp_path):
    out, _ = text_corpus
    records = [json.loads(line) for p in sorted((out / "jsonl").glob("*.jsonl")) for line in p.read_text().splitlines()]
    ds = hf.load_text(str(out), cache_dir=str(tmp_path))
    assert ds.num_rows == len(records) == 2673
    assert [{k: r[k] for k in hf.TEXT_COLUMNS} for r in ds] == [{k: r[k] for k in hf.TEXT_COLUMNS} for r in records]
