"""hf_datasets read units planned from file metadata (`loaders.arrow_units`): a `save_to_disk`
folder with several Arrow shards and a Parquet export, both written by the installed `datasets`,
give exactly the rows `datasets` itself gives (ids and fields), and each unit opens only its own
file, once, reading only its own bytes; neither planning nor reading loads the dataset."""
from __future__ import annotations

import os

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from pipelines.loaders import arrow_units, files, get_loader, offline_ready  # noqa: E402
from pipelines.loaders.splits import parse_split  # noqa: E402
from emulators import s3_server  # noqa: E402,F401 - fixture

N = 2300


def _rows(n: int) -> dict:
    return {"question": [f"question {i}?" + " word" * (i % 7) for i in range(n)],
            "answer": [str(i * 3) for i in range(n)],
            "label": [i % 5 for i in range(n)],
            "tags": [[f"t{i % 3}", f"u{i % 2}"] for i in range(n)],
            "meta": [{"source": "s" + str(i % 4), "score": i / 10} for i in range(n)]}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    import datasets

    base = tmp_path_factory.mktemp("hf_units")
    train = datasets.Dataset.from_dict(_rows(N))
    test = datasets.Dataset.from_dict(_rows(40))
    # save_to_disk writes Arrow IPC streams of 1,000-row record batches, one file per shard
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(base / "saved"), num_shards={"train": 2, "test": 1})
    (base / "pq").mkdir()
    train.select(range(0, 1200)).to_parquet(str(base / "pq" / "train-00000-of-00002.parquet"), batch_size=250)
    train.select(range(1200, N)).to_parquet(str(base / "pq" / "train-00001-of-00002.parquet"), batch_size=250)
    return base


def _expected(ds, split_name: str, selector: str) -> list:
    start, stop = parse_split(selector).resolve(len(ds))
    return [(f"{split_name}:{i}", ds[i]) for i in range(start, stop)]


@pytest.fixture
def no_dataset_loading(monkeypatch):
    """Planning and reading by range must not call datasets' loaders at all."""
    import datasets

    def refuse(*_a, **_k):
        raise AssertionError("the dataset was loaded")

    monkeypatch.setattr(datasets, "load_from_disk", refuse)
    monkeypatch.setattr(datasets, "load_dataset", refuse)


def _plan_and_read(args, selector, monkeypatch):
    """(units, rows); also the files opened and bytes read, per unit (planning is not counted)."""
    loader = get_loader("hf_datasets")
    units = loader.plan("toy", "train", selector, args)
    opened: list = []
    real_open = files.open_binary

    class Counting:
        def __init__(self, handle):
            self.handle, self.bytes = handle, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def read(self, n=-1):
            data = self.handle.read(n)
            self.bytes += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def counting_open(path):
        wrapped = Counting(real_open(path))
        opened[-1].append((path, wrapped))
        return wrapped

    monkeypatch.setattr(files, "open_binary", counting_open)
    rows = []
    for unit in units:
        opened.append([])
        rows.extend((r.row_id, dict(r.fields)) for r in loader.read(unit))
    monkeypatch.setattr(files, "open_binary", real_open)
    return units, rows, opened


@pytest.mark.parametrize("selector", ["train", "train[700:-300]", "train[2200:2210]", "train[10%:20%]"])
def test_save_to_disk_units_give_the_same_rows_and_open_only_their_file(sources, selector, monkeypatch):
    import datasets

    expected = _expected(datasets.load_from_disk(str(sources / "saved"))["train"], "train", selector)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "load_from_disk", lambda *a, **k: pytest.fail("loaded the dataset"))
        units, rows, opened = _plan_and_read({"path": str(sources / "saved"), "rows_per_shard": 1000}, selector, monkeypatch)
    assert rows == expected
    assert sum(get_loader("hf_datasets").count_rows(u) for u in units) == len(expected)
    for unit, opens in zip(units, opened):
        path = unit.args["_file"][0]
        assert [p for p, _ in opens] == [path]  # its own file, once
        (schema_begin, schema_end), (begin, end) = unit.args["_file"][2]
        # it reads its schema message and its record batches, each byte once, and nothing else
        assert opens[0][1].bytes == (schema_end - schema_begin) + (end - begin)
    if selector == "train":  # 2 shards of 1,150 rows, each a 1,000-row batch and a 150-row batch
        assert [(os.path.basename(u.args["_file"][0]), u.args["_keep"]) for u in units] == [
            ("data-00000-of-00002.arrow", [0, 1000]), ("data-00000-of-00002.arrow", [1000, 1150]),
            ("data-00001-of-00002.arrow", [1150, 2150]), ("data-00001-of-00002.arrow", [2150, 2300])]
    if selector == "train[2200:2210]":  # the second file's 150-row batch: a fraction of its bytes
        ((path, handle),) = opened[0]
        assert len(units) == 1 and handle.bytes < os.path.getsize(path) / 2


def test_save_to_disk_other_split_and_missing_split(sources, no_dataset_loading, monkeypatch):
    import datasets
    from pipelines.errors import LoaderError

    loader = get_loader("hf_datasets")
    units = loader.plan("toy", "validation", "test", {"path": str(sources / "saved")})
    rows = [(r.row_id, dict(r.fields)) for u in units for r in loader.read(u)]
    monkeypatch.undo()
    assert rows == _expected(datasets.load_from_disk(str(sources / "saved"))["test"], "test", "test")
    with pytest.raises(LoaderError, match="no split 'validation'"):
        loader.plan("toy", "train", "validation", {"path": str(sources / "saved")})


@pytest.mark.parametrize("selector", ["train", "train[1100:1300]", "train[-7:]"])
def test_parquet_export_units_by_row_group(sources, selector, no_dataset_loading, monkeypatch):
    args = {"dataset": "parquet", "data_files": {"train": str(sources / "pq" / "train-*.parquet")}, "rows_per_shard": 500}
    units, rows, opened = _plan_and_read(args, selector, monkeypatch)
    monkeypatch.undo()
    import datasets

    expected = _expected(datasets.load_dataset("parquet", data_files=args["data_files"], split="train"), "train", selector)
    assert rows == expected
    for unit, opens in zip(units, opened):
        assert [p for p, _ in opens] == [unit.args["_file"][0]]
        lo, hi = unit.args["_file"][2]
        assert hi - lo <= 2  # 250-row groups, 500 rows a unit
    if selector == "train":
        assert [u.args["_keep"] for u in units] == [[0, 500], [500, 1000], [1000, 1200], [1200, 1700], [1700, 2200], [2200, 2300]]


def test_arrow_file_format_and_header_index(tmp_path):
    """The IPC file format (ARROW1 magic) through the `arrow` builder; the index reads headers only."""
    import pyarrow as pa

    table = pa.table({"q": [f"q{i}" for i in range(30)], "n": list(range(30))})
    path = tmp_path / "train.arrow"
    with pa.ipc.new_file(str(path), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=8):
            writer.write_batch(batch)
    index = arrow_units.read_arrow_index(str(path))
    assert index.begin == 8 and [b[2] for b in index.batches] == [8, 8, 8, 6]
    loader = get_loader("hf_datasets")
    units = loader.plan("toy", "train", "train[5:25]", {"dataset": "arrow", "data_files": str(path), "rows_per_shard": 10})
    rows = [(r.row_id, dict(r.fields)) for u in units for r in loader.read(u)]
    assert rows == [(f"train:{i}", {"q": f"q{i}", "n": i}) for i in range(5, 25)]
    assert len(units) == 2


def test_save_to_disk_in_a_bucket_is_range_read_without_a_local_copy(sources, s3_server, no_dataset_loading, monkeypatch):
    """The same folder in s3:// (the moto emulator): planned and read through Beam FileSystems, the
    same rows as the local folder, and no unit reads more than its own file's bytes."""
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    client = s3_server.client()
    local = sources / "saved"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.put_object(Bucket=s3_server.bucket, Key=f"hf/saved/{path.relative_to(local)}", Body=path.read_bytes())
    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    try:
        remote = f"s3://{s3_server.bucket}/hf/saved"
        units, rows, opened = _plan_and_read({"path": remote, "rows_per_shard": 1000}, "train[700:-300]", monkeypatch)
        _, local_rows, _ = _plan_and_read({"path": str(local), "rows_per_shard": 1000}, "train[700:-300]", monkeypatch)
    finally:
        FileSystems.set_options(PipelineOptions([]))
    assert rows == local_rows and len(rows) == N - 1000
    for unit, opens in zip(units, opened):
        assert [p for p, _ in opens] == [unit.args["_file"][0]] and unit.args["_file"][0].startswith(remote)
        (schema_begin, schema_end), (begin, end) = unit.args["_file"][2]
        assert opens[0][1].bytes == (schema_end - schema_begin) + (end - begin)


def test_hub_entries_read_their_copy_under_flanmix_hf_root(sources, tmp_path, no_dataset_loading, monkeypatch):
    """$FLANMIX_HF_ROOT/<dataset>/<name>: a Hub entry reads its save_to_disk copy, by range."""
    import shutil

    shutil.copytree(sources / "saved", tmp_path / "bigscience" / "P3" / "toy_config")
    monkeypatch.setenv("FLANMIX_HF_ROOT", str(tmp_path))
    args = {"dataset": "bigscience/P3", "name": "toy_config"}
    loader = get_loader("hf_datasets")
    assert offline_ready("hf_datasets", args)
    units = loader.plan("toy", "train", "test", args)
    assert units[0].args["path"] == f"{tmp_path}/bigscience/P3/toy_config" and "_keep" in units[0].args
    assert len([r for u in units for r in loader.read(u)]) == 40
