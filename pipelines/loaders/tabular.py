"""Generic row files for template authors' own data: JSON Lines, Parquet and CSV/TSV.

Arguments (`loader.args`):
  path      file, glob or URL; `{split}` is replaced by the entry's source split name
            (`splits: {train: train}` + `path: data/{split}.jsonl` reads data/train.jsonl)
  id_field  optional column holding a stable row id; otherwise ids are `<file name>:<n>`, n being the
            1-based line number (JSONL) or the 0-based row index (CSV, Parquet)
  csv only: delimiter (default ","), columns (names, for files without a header row),
            quote (default '"'; "" turns quoting off, for TSV files whose fields contain quotes)

Values keep their types (JSON / Parquet); CSV values are strings. One shard per file.

    >>> [r.row_id for r in read_jsonl_rows("train", "qa.jsonl", b'{"q": "2+2?", "a": "4"}\\n', None)]
    ['qa.jsonl:1']
"""
from __future__ import annotations

import csv
import io
import json
import posixpath
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files, records
from pipelines.loaders.base import RawRow, SourceShard
from pipelines.loaders.splits import parse_split


def _row_id(fields: Mapping[str, Any], id_field: str | None, fallback: str) -> tuple[str, str | None]:
    if not id_field:
        return fallback, None
    value = fields.get(id_field)
    if value is None or value == "":
        return fallback, f"row has no value in id_field {id_field!r}"
    return str(value), None


def read_jsonl_rows(split: str, name: str, data: bytes, id_field: str | None) -> Iterator[RawRow]:
    """One row per non-empty line (split on `\\n` only, each line decoded alone: `records`)."""
    for line_no, line, undecodable in records.lines(data):
        fallback = f"{name}:{line_no}"
        if undecodable or not line.strip():
            yield RawRow(fallback, None, f"{name} line {line_no}: {undecodable or 'blank (whitespace only)'}", line)
            continue
        fields, problem = records.parse_json(line)
        if problem:
            yield RawRow(fallback, None, f"{name} line {line_no}: {problem}", line)
            continue
        if not isinstance(fields, dict):
            yield RawRow(fallback, None, f"{name} line {line_no}: a JSON {type(fields).__name__}, not an object", line)
            continue
        row_id, problem = _row_id(fields, id_field, fallback)
        yield RawRow(row_id, None if problem else fields, problem, line if problem else None)


def read_csv_rows(name: str, data: bytes, args: Mapping[str, Any]) -> Iterator[RawRow]:
    text = io.StringIO(data.decode("utf-8-sig"), newline="")
    columns = args.get("columns")
    quote = args.get("quote", '"')
    dialect = {"quoting": csv.QUOTE_NONE} if not quote else {"quotechar": quote}
    reader = csv.DictReader(text, fieldnames=list(columns) if columns else None, delimiter=args.get("delimiter", ","), **dialect)
    for index, record in enumerate(reader):
        fallback = f"{name}:{index}"
        if None in record or any(v is None for v in record.values()):
            yield RawRow(fallback, None, f"row {index} does not have exactly the columns {list(reader.fieldnames or [])}",
                         json.dumps({str(k): v for k, v in record.items()}, default=str))
            continue
        row_id, problem = _row_id(record, args.get("id_field"), fallback)
        yield RawRow(row_id, None if problem else dict(record), problem)


def read_parquet_rows(path: str, name: str, id_field: str | None) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    with files.open_binary(path) as handle:
        index = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=4096):
            for fields in batch.to_pylist():
                row_id, problem = _row_id(fields, id_field, f"{name}:{index}")
                yield RawRow(row_id, None if problem else fields, problem)
                index += 1


class _FileLoader:
    type_name = ""

    def _pattern(self, dataset: str, source_split: str, args: Mapping[str, Any]) -> str:
        pattern = args.get("path")
        if not pattern:
            raise LoaderError(files.with_hint(f"{dataset}: the {self.type_name} loader needs loader.args.path", args))
        sel = parse_split(source_split)
        if not sel.is_full:
            raise LoaderError(f"{dataset}: the {self.type_name} loader does not slice splits ({source_split!r}); use one file per split")
        return str(pattern).replace("{split}", sel.name)

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        pattern = self._pattern(dataset, source_split, args)
        try:
            paths = files.expand(pattern, f"dataset {dataset} ({self.type_name})")
        except LoaderError as exc:
            raise LoaderError(files.with_hint(str(exc), args)) from None
        return [SourceShard(dataset, split, self.type_name, {**args, "path": p}, i, size) for i, (p, size) in enumerate(paths)]

    def offline_ready(self, args: Mapping[str, Any], source_split: str = "train") -> bool:
        pattern = str(args.get("path") or "")
        if not pattern or not files.is_local(pattern):
            return False
        try:
            return bool(files.expand(pattern.replace("{split}", parse_split(source_split).name), "probe"))
        except LoaderError:
            return False

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        raise NotImplementedError


class JsonlLoader(_FileLoader):
    type_name = "jsonl"

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        path = shard.args["path"]
        yield from read_jsonl_rows(shard.split, posixpath.basename(path), files.read_bytes(path), shard.args.get("id_field"))


class CsvLoader(_FileLoader):
    type_name = "csv"

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        path = shard.args["path"]
        yield from read_csv_rows(posixpath.basename(path), files.read_bytes(path), shard.args)


class ParquetLoader(_FileLoader):
    type_name = "parquet"

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        path = shard.args["path"]
        yield from read_parquet_rows(path, posixpath.basename(path), shard.args.get("id_field"))
