"""Read units of Arrow and Parquet files planned from the files' own metadata, without opening the
dataset they belong to (the `hf_datasets` loader's path for `save_to_disk` folders and for the
`parquet` / `arrow` packaged builders).

A unit is one file and a range of its record batches (Arrow IPC) or row groups (Parquet):

- Arrow IPC (what `Dataset.save_to_disk` writes: the stream format, one `data-NNNNN-of-MMMMM.arrow`
  per shard; the file format, `ARROW1`, is the stream format between a magic and a footer). Planning
  walks the message headers only: an 8-byte prefix and a small flatbuffer per record batch, then a
  seek over the body, so the launcher reads a few KB per file (`read_arrow_index`). A worker reads
  the schema message and then exactly its batches' bytes, in order.
- Parquet: the footer (`ParquetFile.metadata`) gives each row group's rows and size; a worker reads
  only its row groups' column chunks.

Every file is opened through Beam FileSystems (`files.open_binary`), so a unit in gs:// or s3:// is
range reads of its own bytes: nothing is copied to local disk and no unit touches another file.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files

_CONTINUATION = 0xFFFFFFFF
_ARROW_MAGIC = b"ARROW1"
_HEADER_SCHEMA, _HEADER_DICTIONARY, _HEADER_RECORD_BATCH = 1, 2, 3
EOS = struct.pack("<Ii", _CONTINUATION, 0)  # the end-of-stream marker of the IPC stream format


@dataclass(frozen=True)
class ArrowIndex:
    """Where an Arrow IPC file's messages are: the schema message's bytes ([begin, schema_end)) and,
    per record batch, (offset, end, rows)."""

    begin: int  # 8 for the file format (after the magic and padding), else 0
    schema_end: int
    batches: tuple[tuple[int, int, int], ...]

    @property
    def num_rows(self) -> int:
        return sum(b[2] for b in self.batches)


def _field(buf: bytes, table: int, index: int) -> int | None:
    """Absolute position of field `index` of the flatbuffer table at `table` (None if absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vt_size:
        return None
    offset = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + offset if offset else None


def _message_header(meta: bytes) -> tuple[int, int, int]:
    """(header type, body length, rows of a record batch) of one IPC `Message` flatbuffer."""
    root = struct.unpack_from("<I", meta, 0)[0]
    at = _field(meta, root, 1)
    header_type = meta[at] if at is not None else 0
    at = _field(meta, root, 3)
    body = struct.unpack_from("<q", meta, at)[0] if at is not None else 0
    rows = 0
    if header_type == _HEADER_RECORD_BATCH and (at := _field(meta, root, 2)) is not None:
        batch = at + struct.unpack_from("<I", meta, at)[0]
        length = _field(meta, batch, 0)
        rows = struct.unpack_from("<q", meta, length)[0] if length is not None else 0
    return header_type, body, rows


def _read_exact(handle, n: int, path: str) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise LoaderError(f"{path}: Arrow IPC file ends inside a message (wanted {n} bytes, got {len(data)})")
    return data


def read_arrow_index(path: str) -> ArrowIndex:
    """The message layout of an Arrow IPC file (stream or file format), from its headers only."""
    with files.open_binary(path) as handle:
        head = handle.read(8)
        begin = 8 if head[:6] == _ARROW_MAGIC else 0
        handle.seek(begin)
        pos, schema_end, batches = begin, None, []
        while True:
            prefix = handle.read(4)
            if len(prefix) < 4:
                break  # a stream written without its end-of-stream marker
            size = struct.unpack("<I", prefix)[0]
            prefix_len = 4
            if size == _CONTINUATION:
                size = struct.unpack("<i", _read_exact(handle, 4, path))[0]
                prefix_len = 8
            if size == 0:
                break  # end of stream
            meta = _read_exact(handle, size, path)
            try:
                kind, body, rows = _message_header(meta)
            except (struct.error, IndexError) as exc:
                raise LoaderError(f"{path}: not an Arrow IPC file (message at byte {pos} does not parse: {exc})") from None
            end = pos + prefix_len + size + body
            if kind == _HEADER_SCHEMA and schema_end is None:
                schema_end = end
            elif kind == _HEADER_DICTIONARY:
                raise LoaderError(f"{path}: dictionary-encoded Arrow columns are not read by range")
            elif kind == _HEADER_RECORD_BATCH:
                if schema_end is None:
                    raise LoaderError(f"{path}: Arrow IPC record batch before the schema")
                batches.append((pos, end, rows))
            handle.seek(end)
            pos = end
    if schema_end is None:
        raise LoaderError(f"{path}: not an Arrow IPC file (no schema message)")
    return ArrowIndex(begin, schema_end, tuple(batches))


class _Ranges(io.RawIOBase):
    """A read-only stream of byte ranges of one open file, then fixed trailing bytes (the IPC stream
    pyarrow reads: the schema message, the unit's batches, an end-of-stream marker)."""

    def __init__(self, handle, ranges: list[tuple[int, int]], tail: bytes):
        super().__init__()
        self._handle, self._ranges, self._tail, self._at = handle, list(ranges), tail, None

    def readable(self) -> bool:
        return True

    def readinto(self, out) -> int:
        while self._ranges:
            start, end = self._ranges[0]
            if self._at is None:
                self._handle.seek(start)
                self._at = start
            if self._at >= end:
                self._ranges.pop(0)
                self._at = None
                continue
            data = self._handle.read(min(len(out), end - self._at))
            if not data:
                raise LoaderError(f"file ended at byte {self._at}, inside bytes [{start}, {end}) of an Arrow unit")
            self._at += len(data)
            out[:len(data)] = data
            return len(data)
        n = min(len(out), len(self._tail))
        out[:n], self._tail = self._tail[:n], self._tail[n:]
        return n


def iter_arrow_batches(path: str, schema: tuple[int, int], batch_range: tuple[int, int]):
    """The record batches in bytes [batch_range) of the IPC file at `path`, read with one open and
    range reads of exactly the schema message and those bytes."""
    import pyarrow as pa

    with files.open_binary(path) as handle:
        stream = io.BufferedReader(_Ranges(handle, [tuple(schema), tuple(batch_range)], EOS), buffer_size=1 << 20)
        yield from pa.ipc.open_stream(stream)


def parquet_row_groups(path: str) -> list[tuple[int, int]]:
    """(rows, uncompressed bytes) of each row group of a Parquet file, from its footer."""
    import pyarrow.parquet as pq

    with files.open_binary(path) as handle:
        meta = pq.ParquetFile(handle).metadata
        return [(meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)]


def iter_parquet_batches(path: str, groups: tuple[int, int], batch_size: int = 4096):
    """The rows of row groups [groups) of the Parquet file at `path` (one open, its column chunks only)."""
    import pyarrow.parquet as pq

    lo, hi = groups
    if hi <= lo:
        return
    with files.open_binary(path) as handle:
        yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size, row_groups=list(range(lo, hi)))


@dataclass(frozen=True)
class Piece:
    """A run of record batches / row groups of one file: the smallest thing a unit reads."""

    path: str
    kind: str  # "arrow" | "parquet"
    first_row: int  # index in the whole split of the piece's first row
    rows: int
    size_bytes: int
    locator: tuple  # arrow: ((schema begin, end), (bytes begin, end)); parquet: (first group, end group)


def file_pieces(path: str, kind: str, first_row: int) -> list[Piece]:
    """One piece per record batch / row group of a file, rows numbered from `first_row`."""
    out = []
    if kind == "arrow":
        index = read_arrow_index(path)
        for start, end, rows in index.batches:
            out.append(Piece(path, kind, first_row, rows, end - start, ((index.begin, index.schema_end), (start, end))))
            first_row += rows
    else:
        for g, (rows, size) in enumerate(parquet_row_groups(path)):
            out.append(Piece(path, kind, first_row, rows, size, (g, g + 1)))
            first_row += rows
    return out


def group_pieces(pieces: list[Piece], start: int, stop: int, rows_per_unit: int) -> list[dict[str, Any]]:
    """Units over rows [start, stop) of a split: consecutive pieces of one file, at least
    `rows_per_unit` rows each where a file has them (never less than one piece). Each unit's args:
    `_file` (path, kind, locator), `_first_row` of its first piece, `_keep` [lo, hi) of the split's
    row indices it yields, `_rows` and `_bytes`."""
    units: list[dict[str, Any]] = []
    current: list[Piece] = []

    def close():
        if not current:
            return
        first, last = current[0], current[-1]
        lo, hi = max(start, first.first_row), min(stop, last.first_row + last.rows)
        if first.kind == "arrow":
            locator = [list(first.locator[0]), [first.locator[1][0], last.locator[1][1]]]
        else:
            locator = [first.locator[0], last.locator[1]]
        total = sum(p.rows for p in current)
        units.append({"_file": [first.path, first.kind, locator], "_first_row": first.first_row, "_keep": [lo, hi],
                      "_rows": hi - lo, "_bytes": int(sum(p.size_bytes for p in current) * (hi - lo) / max(1, total))})
        current.clear()

    for piece in pieces:
        if piece.first_row + piece.rows <= start or piece.first_row >= stop or not piece.rows:
            continue
        if current and (current[-1].path != piece.path or sum(p.rows for p in current) >= rows_per_unit):
            close()
        current.append(piece)
    close()
    return units


def iter_unit_rows(args: Mapping[str, Any]) -> Iterator[tuple[int, dict]]:
    """(index in the split, fields) of the rows a unit keeps, in file order."""
    path, kind, locator = args["_file"]
    lo, hi = args["_keep"]
    columns = args.get("_columns")
    index = args["_first_row"]
    batches = iter_arrow_batches(path, locator[0], locator[1]) if kind == "arrow" else iter_parquet_batches(path, locator)
    for batch in batches:
        n = batch.num_rows
        if index + n <= lo or index >= hi:
            index += n
            continue
        if columns is not None:
            batch = batch.select(columns)
        skip = max(0, lo - index)
        batch = batch.slice(skip, min(n, hi - index) - skip)
        index += skip
        for fields in batch.to_pylist():
            yield index, fields
            index += 1
        index += n - skip - batch.num_rows
        if index >= hi:
            return
