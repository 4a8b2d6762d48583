"""Verify staged files before publishing: each one re-read, its size, SHA-256 and row count (TFRecord
frames, JSONL lines, the Parquet footer) equal to what its writer reported, and every shard series
complete."""
from __future__ import annotations

import hashlib
import re
import zlib
from typing import Iterable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.formats.writers import WrittenFile
from pipelines.publish.staging import PublishError, _join

CHUNK = 8 * 1024 * 1024
SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<suffix>\..*)?$")


class _TFRecordFrames:
    """Counts TFRecord frames (8-byte length, 4-byte CRC, data, 4-byte CRC) in a byte stream."""

    def __init__(self):
        self.count, self._skip, self._header = 0, 0, b""

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            need = 12 - len(self._header)
            self._header += data[pos:pos + need]
            pos += min(need, n - pos)
            if len(self._header) == 12:
                length = int.from_bytes(self._header[:8], "little")
                self._skip, self._header = length + 4, b""
                self.count += 1

    def complete(self) -> bool:
        return self._skip == 0 and not self._header


class _Lines:
    def __init__(self):
        self.count = 0

    def feed(self, data: bytes) -> None:
        self.count += data.count(b"\n")

    def complete(self) -> bool:
        return True


class _ParquetFooter:
    """Keeps the end of a Parquet byte stream and reads the row count from its footer."""

    KEEP = 4 * 1024 * 1024

    def __init__(self):
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-self.KEEP:]

    def complete(self) -> bool:
        return self._tail.endswith(b"PAR1") and len(self._tail) >= 8 + self._footer_length()

    def _footer_length(self) -> int:
        return int.from_bytes(self._tail[-8:-4], "little") if len(self._tail) >= 8 else 1 << 62

    @property
    def count(self) -> int:
        import io

        import pyarrow.parquet as pq

        footer = self._tail[-(self._footer_length() + 8):]
        return pq.read_metadata(io.BytesIO(b"PAR1" + footer)).num_rows


def _row_counter(path: str):
    """A streaming row counter for the file's format (TFRecord, Parquet, JSONL; .gz allowed), or None."""
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith(".tfrecord"):
        return _TFRecordFrames()
    if name.endswith(".jsonl"):
        return _Lines()
    if name.endswith(".parquet") and not path.endswith(".gz"):
        return _ParquetFooter()
    return None


def verify_file(staging: str, written: WrittenFile) -> WrittenFile:
    """Re-read one staged file (one pass): its size and SHA-256 must equal what the writer reported,
    and so must its row count where the format can be counted (TFRecord frames, Parquet footer, JSONL
    lines)."""
    path = _join(staging, written.path)
    digest, size = hashlib.sha256(), 0
    counter = _row_counter(path)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if path.endswith(".gz") else None
    try:
        handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as exc:  # noqa: BLE001 - Beam raises scheme-specific errors for a missing object
        raise PublishError(f"staged file {path} is missing or unreadable: {exc}") from None
    with handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if counter is not None:
                counter.feed(inflate.decompress(chunk) if inflate else chunk)
    if size != written.num_bytes or digest.hexdigest() != written.sha256:
        raise PublishError(
            f"staged file {path}: {size} bytes, sha256 {digest.hexdigest()}; the writer reported "
            f"{written.num_bytes} bytes, sha256 {written.sha256}"
        )
    if counter is not None:
        if not counter.complete():
            raise PublishError(f"staged file {path}: truncated (its last record or footer is incomplete)")
        if counter.count != written.num_rows:
            raise PublishError(f"staged file {path} holds {counter.count} rows; the writer reported {written.num_rows}")
    return written


def check_complete(files: Iterable[WrittenFile]) -> None:
    """Every `NAME-SSSSS-of-NNNNN.EXT` series has all N members."""
    series: dict[tuple, set] = {}
    for f in files:
        directory, _, name = f.path.rpartition("/")
        m = SHARD_RE.match(name)
        if m:
            key = (directory, m["stem"], m["suffix"] or "", int(m["count"]))
            series.setdefault(key, set()).add(int(m["index"]))
    for (directory, stem, suffix, count), seen in sorted(series.items()):
        missing = sorted(set(range(count)) - seen)
        if missing:
            raise PublishError(f"{directory}/{stem}-*-of-{count:05d}{suffix}: shard(s) {missing} were not written")
