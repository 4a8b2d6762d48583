"""Shard files written a batch at a time: the same bytes as writing the whole shard at once, and a
write stage that never holds more than a couple of batches of a shard."""
from __future__ import annotations

import collections
import functools
import gc
import hashlib
import io
import weakref

import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.io.tfrecordio import _TFRecordUtil

from flanmix_corpus.layouts import LAYOUT_DECODER, LAYOUT_ENCDEC
from pipelines.formats import layouts, writers
from pipelines.formats.rows import TokenizedExample, pack_batches, unpack_row
from pipelines.stages.write import count_batch, write_packed_shard

from buildkit import small_plan


def examples(n: int, seed: int = 0) -> list[TokenizedExample]:
    rng = np.random.default_rng(seed)
    return [TokenizedExample(rng.integers(2, 8000, int(rng.integers(3, 300)), dtype=np.int32),
                             rng.integers(2, 8000, int(rng.integers(2, 60)), dtype=np.int32), f"ds{i % 3}|t|zs_opt|r{i}")
            for i in range(n)]


def whole_parquet(batches, layout: str) -> bytes:
    """A shard's Parquet written at once, with the build's settings: the bytes streaming must give."""
    buffer = io.BytesIO()
    pq.write_table(layouts.to_arrow_table(list(batches), layout), buffer, compression="zstd",
                   row_group_size=writers.PARQUET_ROW_GROUP, use_dictionary=False)
    return buffer.getvalue()


def whole_tfrecord(batches) -> bytes:
    buffer = io.BytesIO()
    for batch in batches:
        for example in layouts.to_tf_examples(batch):
            _TFRecordUtil.write_record(buffer, example)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def batches(layout: str, n: int = 9000, seed: int = 0) -> tuple:
    return tuple(pack_batches(examples(n, seed), layout, 512, 128, 640))


@pytest.mark.parametrize("layout", [LAYOUT_ENCDEC, LAYOUT_DECODER])
@pytest.mark.parametrize("empty", [False, True])
def test_streamed_files_are_the_bytes_of_a_whole_shard_write(tmp_path, layout, empty):
    packed = [] if empty else list(batches(layout))
    assert empty or len(packed) >= 3 and len(packed[0]) == writers.PARQUET_ROW_GROUP  # several full row groups
    for writer, whole, name in ((writers.ParquetShardWriter(str(tmp_path), "p/x.parquet", layout),
                                 whole_parquet(packed, layout), "p/x.parquet"),
                                (writers.TFRecordShardWriter(str(tmp_path), "t/x.tfrecord"),
                                 whole_tfrecord(packed), "t/x.tfrecord")):
        for batch in packed:
            writer.add(batch)
        written = writer.close()
        data = (tmp_path / name).read_bytes()
        assert data == whole
        assert (written.path, written.num_rows, written.num_bytes, written.sha256) == (
            name, sum(len(b) for b in packed), len(data), hashlib.sha256(data).hexdigest())
    table = pq.read_table(tmp_path / "p/x.parquet")
    assert table.num_rows == sum(len(b) for b in packed)
    if not empty:  # the rows read back are the packed ones
        first = {k: np.asarray(v) for k, v in table.slice(0, 1).to_pylist()[0].items() if k != "provenance"}
        assert unpack_row(first) == unpack_row({k: a[0] for k, a in packed[0].arrays.items()})


def test_an_empty_shard_file_is_created_without_any_write(tmp_path):
    written = writers.TFRecordShardWriter(str(tmp_path), "t/empty.tfrecord").close()
    assert (tmp_path / "t/empty.tfrecord").read_bytes() == b"" and written.num_bytes == 0


@pytest.mark.parametrize("formats", [None, "parquet", "tfrecord"])
def test_write_stage_streams_a_shard_holding_few_batches(tmp_path, catalog, families, vocab, formats):
    plan = small_plan(tmp_path, catalog, families, vocab, layout=LAYOUT_ENCDEC, inputs_length=512, targets_length=128,
                      file_formats=formats)
    alive, most = [0], 0  # batches yielded and not yet freed

    def freed():
        alive[0] -= 1

    def stream():
        nonlocal most
        for batch in pack_batches(examples(20_000, seed=1), LAYOUT_ENCDEC, 512, 128):  # made as they are asked for
            gc.collect()
            most = max(most, alive[0])
            alive[0] += 1
            weakref.finalize(batch, freed)
            yield batch

    report = write_packed_shard(0, stream(), plan, str(tmp_path / "out"))
    packed = list(batches(LAYOUT_ENCDEC, 20_000, 1))
    assert len(packed) >= 5
    assert most <= 2  # the batch being written and, for Parquet, the one its helper thread encodes
    counts: collections.Counter = collections.Counter()
    for batch in packed:
        count_batch(counts, batch, plan, 0)
    assert report.counts == dict(counts)
    for written in report.files:
        data = (tmp_path / "out" / written.path).read_bytes()
        whole = whole_parquet(packed, LAYOUT_ENCDEC) if written.path.endswith(".parquet") else whole_tfrecord(packed)
        assert data == whole and written.num_rows == sum(len(b) for b in packed)
    assert [f.path.split("/")[0] for f in report.files] == (list(plan.file_formats))
