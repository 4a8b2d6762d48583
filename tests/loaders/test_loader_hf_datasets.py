"""Hugging Face datasets: a save_to_disk folder and Parquet files through the packaged builder,
read with the same plan + read calls a build makes; the Hub is never contacted."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from pipelines.errors import LoaderError  # noqa: E402
from pipelines.loaders import get_loader, offline_ready  # noqa: E402

ROWS = {"question": ["2+2?", "Capital of France?", "Color of the sky?", "3*3?", "Opposite of hot?"],
        "answer": ["4", "Paris", "blue", "9", "cold"], "label": [0, 1, 2, 3, 4]}


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    import datasets

    path = tmp_path_factory.mktemp("hf") / "toy"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(ROWS),
                          "test": datasets.Dataset.from_dict({k: v[:1] for k, v in ROWS.items()})}).save_to_disk(str(path))
    return str(path)


def read(args, source="train", split="train"):
    loader = get_loader("hf_datasets")
    shards = loader.plan("toy", split, source, args)
    return shards, [row for shard in shards for row in loader.read(shard)]


def test_save_to_disk_folder_with_slices_keeps_absolute_row_ids(saved_dir):
    assert offline_ready("hf_datasets", {"path": saved_dir})
    shards, rows = read({"path": saved_dir, "rows_per_shard": 2}, source="train[1:-1]")
    # one record batch (5 rows) is the smallest unit a file is read by, whatever rows_per_shard says
    assert [s.args["_keep"] for s in shards] == [[1, 4]]
    assert [(r.row_id, r.fields["answer"], r.fields["label"]) for r in rows] == [
        ("train:1", "Paris", 1), ("train:2", "blue", 2), ("train:3", "9", 3)]
    _, rows = read({"path": saved_dir}, source="test", split="validation")
    assert [(r.row_id, r.fields) for r in rows] == [("test:0", {"question": "2+2?", "answer": "4", "label": 0})]


def test_missing_split_in_saved_folder(saved_dir):
    with pytest.raises(LoaderError, match="no split 'validation'"):
        read({"path": saved_dir}, source="validation")


def test_parquet_files_through_load_dataset(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(ROWS), tmp_path / "train-00000.parquet")
    args = {"dataset": "parquet", "data_files": {"train": str(tmp_path / "train-*.parquet")}}
    assert offline_ready("hf_datasets", args)
    _, rows = read(args, source="train[-2:]")
    assert [(r.row_id, r.fields["question"]) for r in rows] == [("train:3", "3*3?"), ("train:4", "Opposite of hot?")]


def test_streaming_reads_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i in range(2):
        pq.write_table(pa.table({k: v[i * 2:(i + 1) * 2] for k, v in ROWS.items()}), tmp_path / f"train-{i}.parquet")
    args = {"dataset": "parquet", "data_files": {"train": sorted(str(p) for p in tmp_path.glob("train-*.parquet"))}, "streaming": True}
    shards, rows = read(args)
    assert len(shards) == 2
    assert [(r.row_id, r.fields["answer"]) for r in rows] == [("train:0:0", "4"), ("train:0:1", "Paris"), ("train:1:0", "blue"), ("train:1:1", "9")]


def test_unreachable_hub_dataset_says_what_was_tried_and_how_to_provide_it():
    args = {"dataset": "bigscience/P3", "name": "cos_e_v1.11_i_think", "hint": "P3 is large"}
    assert not offline_ready("hf_datasets", args)
    with pytest.raises(LoaderError) as err:
        read(args)
    message = str(err.value)
    assert "tried datasets.load_dataset('bigscience/P3', name='cos_e_v1.11_i_think', split='train')" in message
    assert "save_to_disk" in message and "loader.args.path" in message and "HF_DATASETS_OFFLINE=1" in message
    assert "P3 is large" in message
