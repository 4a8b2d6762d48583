"""Write one corpus shard with the real formats' writers, through Beam FileSystems (local/gs/s3).

TFRecord framing is Beam's own (`tfrecordio._TFRecordUtil`, CRC32C); Parquet is pyarrow's writer.
Each write returns its byte size and SHA-256 so the manifest can vouch for what it lists.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from pipelines.formats import layouts as features
from pipelines.formats.rows import ROWS_PER_BATCH, PackedBatch


@dataclass(frozen=True)
class WrittenFile:
    path: str  # relative to the output directory
    num_rows: int
    num_bytes: int
    sha256: str


def shard_name(prefix: str, index: int, count: int, suffix: str) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}{suffix}"


def _put(output_dir: str, relative: str, data: bytes) -> None:
    path = FileSystems.join(output_dir, relative)
    if not data and path.startswith("s3://"):
        _put_empty_s3(path)
        return
    with FileSystems.create(path) as handle:
        handle.write(data)


def _put_empty_s3(path: str) -> None:
    """Beam 2.77's S3 writer cannot create a 0-byte object (it completes a multipart upload with no
    parts, which S3 rejects as MalformedXML), and an empty shard or dead-letter file is legitimate:
    write it with one PutObject through Beam's own client and options."""
    from apache_beam.io.aws import s3io

    bucket, key = s3io.parse_s3_path(path)
    filesystem = FileSystems.get_filesystem(path)
    s3io.S3IO(options=filesystem._options).client.client.put_object(Bucket=bucket, Key=key, Body=b"")


class _HashingSink:
    """The write side of a shard file: counts and hashes every byte on its way to the file, which
    is opened on the first write (an empty file goes through `_put`, for S3's sake)."""

    def __init__(self, output_dir: str, relative: str):
        self.output_dir, self.relative = output_dir, relative
        self._hash, self.size, self._handle, self.closed = hashlib.sha256(), 0, None, False

    def write(self, data) -> int:
        data = bytes(data) if not isinstance(data, bytes) else data
        if data:
            if self._handle is None:
                self._handle = FileSystems.create(FileSystems.join(self.output_dir, self.relative))
            self._handle.write(data)
            self._hash.update(data)
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        """Close the file; Arrow's writer closes its sink too, so a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        if self._handle is None:
            _put(self.output_dir, self.relative, b"")
        else:
            self._handle.close()

    def written(self, num_rows: int) -> WrittenFile:
        return WrittenFile(self.relative, num_rows, self.size, self._hash.hexdigest())


class ShardFileWriter:
    """One shard file written batch by batch (`add`), so a shard's packed rows never need to be in
    memory together: what a worker holds while writing is one batch, whatever the shard's size.
    `close()` returns the WrittenFile (size and SHA-256 of the bytes written)."""

    def __init__(self, output_dir: str, relative: str):
        self.sink, self.num_rows = _HashingSink(output_dir, relative), 0

    def add(self, batch: PackedBatch) -> None:
        self._add(batch)
        self.num_rows += len(batch)

    def close(self) -> WrittenFile:
        self._finish()
        self.sink.close()
        return self.sink.written(self.num_rows)

    def _add(self, batch: PackedBatch) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        pass


class TFRecordShardWriter(ShardFileWriter):
    """TFRecord framing (length, CRC32C) of one tf.train.Example per row; a batch goes out in one write."""

    def _add(self, batch: PackedBatch) -> None:
        buffer = io.BytesIO()
        for example in features.to_tf_examples(batch):
            _TFRecordUtil.write_record(buffer, example)
        self.sink.write(buffer.getvalue())


PARQUET_ROW_GROUP = ROWS_PER_BATCH  # one row group per batch the packer yields


class ParquetShardWriter(ShardFileWriter):
    """Parquet through pyarrow's streaming writer, row groups of `PARQUET_ROW_GROUP` rows.

    A batch holds at most `rows.ROWS_PER_BATCH` (= PARQUET_ROW_GROUP) rows, so each batch is one row
    group and the file is byte for byte what writing the whole shard's table at once gives (tested).
    No timestamps or writer-specific metadata beyond the version string: output is reproducible.
    No dictionary encoding: token ids and provenance (one unique key per example) rarely repeat
    within a page, so Arrow would build each page's dictionary only to give it up, which cost a
    third of the write."""

    def __init__(self, output_dir: str, relative: str, layout: str = "encdec"):
        super().__init__(output_dir, relative)
        self.layout = layout
        self._writer = pq.ParquetWriter(self.sink, features.arrow_schema(layout), compression="zstd", use_dictionary=False)

    def _add(self, batch: PackedBatch) -> None:
        self._writer.write_table(features.to_arrow_table([batch], self.layout), row_group_size=PARQUET_ROW_GROUP)

    def _finish(self) -> None:
        if not self.num_rows:  # what pq.write_table writes for an empty table: one empty row group
            self._writer.write_table(features.arrow_schema(self.layout).empty_table(), row_group_size=PARQUET_ROW_GROUP)
        self._writer.close()


def write_file(output_dir: str, relative: str, data: bytes, num_rows: int) -> WrittenFile:
    _put(output_dir, relative, data)
    return WrittenFile(relative, num_rows, len(data), hashlib.sha256(data).hexdigest())
