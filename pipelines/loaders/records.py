"""Records of line-oriented files (JSON Lines, the CoT TSVs), split and decoded so that one bad row
costs that row and nothing else.

- Records end at `\\n` (a `\\r` before it is dropped). Not `str.splitlines`: it also splits at
  U+2028, U+2029, U+0085, `\\f`, `\\v` and `\\x1c`-`\\x1e`, which are legal inside a JSON string or a
  TSV field, and turned one record into two broken ones.
- Each line is decoded on its own: an undecodable byte makes that line a dead letter naming the
  file, the line and the byte, instead of failing the whole file.
- A UTF-8 byte-order mark at the start of the file is not part of the first record.
- An empty line is not a record (files often end with one); a line of only whitespace is a record,
  a dead letter ("blank"), so it is counted rather than vanishing.
- JSON that Python refuses for its size (an integer of more than `sys.get_int_max_str_digits()`
  digits, nesting deep enough to exhaust the recursion limit) is a dead letter too.

The ledger this gives, for every file: non-empty lines = rows the loader yields (each a row or a
dead letter).

    >>> [(n, t) for n, t, _ in lines(b"\\xef\\xbb\\xbfa\\r\\nb\\x0cc\\n\\nd")]
    [(1, 'a'), (2, 'b\\x0cc'), (4, 'd')]
"""
from __future__ import annotations

import json
from typing import Any, Iterator

BOM = b"\xef\xbb\xbf"


def lines(data: bytes) -> Iterator[tuple[int, str | None, str | None]]:
    """(1-based line number, text or None, why it could not be decoded or None) per non-empty line."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    for line_no, raw in enumerate(data.split(b"\n"), start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            continue
        try:
            yield line_no, raw.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            yield line_no, raw.decode("utf-8", errors="replace"), f"byte {exc.start} is not UTF-8 ({exc.reason})"


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) or (None, why the text is not JSON Python can hold)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return None, "JSON nested too deeply to read"
    except ValueError as exc:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        return None, f"JSON value Python refuses: {exc}"


def unique_row_ids(rows):
    """The rows of one source shard, a row whose id was already seen in it turned into a dead letter.
    Row ids key every sampling and template choice, so two rows with one id would get the same
    choices (and the same place in the corpus); the second is not silently accepted.

    >>> from pipelines.loaders.base import RawRow
    >>> [r.error for r in unique_row_ids([RawRow("a", {}), RawRow("a", {})])]
    [None, "duplicate row id 'a' (first seen as row 1 of this source file)"]
    """
    seen: dict[str, int] = {}
    for index, row in enumerate(rows, start=1):
        first = seen.setdefault(row.row_id, index)
        if first != index:
            from pipelines.loaders.base import RawRow

            raw = row.raw if row.raw is not None else json.dumps(row.fields, ensure_ascii=False, default=str)
            yield RawRow(row.row_id, None, f"duplicate row id {row.row_id!r} (first seen as row {first} of this source file)", raw)
        else:
            yield row
