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
from pipelines.formats.rows import PackedBatch


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


def tfrecord_bytes(batches: list[PackedBatch]) -> bytes:
    buffer = io.BytesIO()
    for batch in batches:
        for example in features.to_tf_examples(batch):
            _TFRecordUtil.write_record(buffer, example)
    return buffer.getvalue()


PARQUET_ROW_GROUP = 1024


def parquet_bytes(batches: list[PackedBatch], layout: str = "encdec") -> bytes:
    buffer = io.BytesIO()
    # No timestamps or writer-specific metadata beyond the version string: output is reproducible.
    # No dictionary encoding: token ids and provenance (one unique key per example) rarely repeat
    # within a page, so Arrow would build each page's dictionary only to give it up, which cost a
    # third of the write.
    pq.write_table(features.to_arrow_table(batches, layout), buffer, compression="zstd",
                   row_group_size=PARQUET_ROW_GROUP, use_dictionary=False)
    return buffer.getvalue()


def write_file(output_dir: str, relative: str, data: bytes, num_rows: int) -> WrittenFile:
    _put(output_dir, relative, data)
    return WrittenFile(relative, num_rows, len(data), hashlib.sha256(data).hexdigest())
