"""Rows of a source as Parquet, exactly: what a loader yielded is what a snapshot build reads back.

A snapshot file has one row per `RawRow` (dead letters included, so a build from the snapshot
dead-letters the same rows with the same reasons) and these columns:

    _row_id  string       the loader's row id
    _error   string|null  why the loader could not parse the row
    _raw     string|null  the unparsed text kept for the dead-letter record
    <field>  native       one column per catalog-declared field whose declared type Arrow holds
                          exactly (string, int -> int64, float -> float64, bool, list[...]), for
                          reading the snapshot with any Parquet tool
    _exact   string|null  typed JSON of everything else (null when the row has no fields): the key
                          order, and every value that is undeclared, of another type than declared
                          (an int in a float field, None, a tuple, bytes...) or of type `object`

Why not Arrow's own inference: it turns an int column with one None into floats, merges mixed
lists, and loses key order and tuples; a build must render byte-identical prompts from the
snapshot, so every value comes back with its Python type. Typed JSON keeps None, bool, int and
float apart (JSON does), and tags the rest: {"t": [...]} a tuple, {"m": [[k, v], ...]} a mapping
(any key type, in order), {"b": base64} bytes, {"f": "nan"|"inf"|"-inf"} a non-finite float.
A value of any other type (a datetime, a numpy scalar left unconverted) is refused naming the
field, so nothing is stored as something it was not.

    >>> rows = [RawRow("a:1", {"q": "x", "n": 1, "l": None}), RawRow("a:2", None, "bad line", "{")]
    >>> decode_table(encode_rows(rows, {"q": "string", "n": "float"})) == rows
    True
"""
from __future__ import annotations

import base64
import io
import json
import math
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import LoaderError
from pipelines.loaders.base import RawRow

META_COLUMNS = ("_row_id", "_error", "_raw")
EXACT = "_exact"
ROW_GROUP_ROWS = 8192
INT64 = (-(2 ** 63), 2 ** 63 - 1)


class EncodeError(LoaderError):
    """A row value that a snapshot cannot store exactly."""


def arrow_type(type_name: str) -> pa.DataType | None:
    """The Arrow type that holds values of a declared catalog type exactly; None for `object`."""
    simple = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    if type_name in simple:
        return simple[type_name]
    if type_name.startswith("list[") and type_name.endswith("]"):
        inner = arrow_type(type_name[5:-1])
        return pa.list_(inner) if inner is not None else None
    return None


def fits(value: Any, type_name: str) -> bool:
    """Whether `value` reads back from the native column of `type_name` as the same Python value
    of the same type (so `type(v) is int`, not isinstance: a bool is not an int here)."""
    if type_name == "string":  # a lone surrogate (legal in a Python str from JSON) is not UTF-8
        return type(value) is str and (value.isascii() or _utf8(value))
    if type_name == "int":
        return type(value) is int and INT64[0] <= value <= INT64[1]
    if type_name == "float":
        return type(value) is float
    if type_name == "bool":
        return type(value) is bool
    if type_name.startswith("list[") and type(value) is list:
        inner = type_name[5:-1]
        return arrow_type(inner) is not None and all(fits(v, inner) for v in value)
    return False


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def to_json(value: Any, where: str) -> Any:
    """`value` as typed JSON (see the module docstring)."""
    if value is None or type(value) in (bool, str, int):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"f": repr(value)}
    if type(value) is list:
        return [to_json(v, where) for v in value]
    if type(value) is tuple:
        return {"t": [to_json(v, where) for v in value]}
    if isinstance(value, Mapping):
        return {"m": [[to_json(k, where), to_json(v, where)] for k, v in value.items()]}
    if isinstance(value, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(value)).decode("ascii")}
    raise EncodeError(f"{where}: a value of type {type(value).__module__}.{type(value).__name__} cannot be stored "
                      f"exactly in a snapshot (the loader should yield plain Python values)")


def from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, dict):
        ((tag, inner),) = value.items()
        if tag == "t":
            return tuple(from_json(v) for v in inner)
        if tag == "m":
            return {from_json(k): from_json(v) for k, v in inner}
        if tag == "b":
            return base64.b64decode(inner)
        if tag == "f":
            return float(inner)
        raise ValueError(f"unknown typed-JSON tag {tag!r}")
    return value


def native_fields(declared: Mapping[str, str]) -> dict[str, pa.DataType]:
    """Declared fields that get a native column (in declaration order)."""
    out = {}
    for name, type_name in declared.items():
        kind = arrow_type(type_name)
        if kind is not None and not name.startswith("_"):
            out[name] = kind
    return out


def encode_rows(rows: Iterable[RawRow], declared: Mapping[str, str], where: str = "row") -> pa.Table:
    natives = native_fields(declared)
    columns: dict[str, list] = {c: [] for c in (*META_COLUMNS, *natives, EXACT)}
    for row in rows:
        columns["_row_id"].append(row.row_id)
        columns["_error"].append(row.error)
        columns["_raw"].append(row.raw)
        fields = row.fields
        if fields is None:
            for name in natives:
                columns[name].append(None)
            columns[EXACT].append(None)
            continue
        rest = []
        for name, type_name in ((n, declared[n]) for n in natives):
            value = fields.get(name)
            if name in fields and fits(value, type_name):
                columns[name].append(value)
            else:
                columns[name].append(None)
        for key, value in fields.items():
            if not (key in natives and fits(value, declared[key])):
                rest.append([to_json(key, f"{where} {row.row_id}"), to_json(value, f"{where} {row.row_id} field {key!r}")])
        exact = {"order": [to_json(k, where) for k in fields], "rest": rest}
        columns[EXACT].append(json.dumps(exact, separators=(",", ":")))  # ASCII: lone surrogates survive as escapes
    schema = pa.schema([(c, pa.string()) for c in META_COLUMNS] + [(n, t) for n, t in natives.items()]
                       + [(EXACT, pa.string())])
    return pa.table(columns, schema=schema)


def decode_table(table: pa.Table) -> list[RawRow]:
    cols = {n: table.column(n).to_pylist() for n in table.column_names}
    rows = []
    all_native: dict[str, tuple] = {}  # rows with every field in its native column share one layout
    for i, row_id in enumerate(cols["_row_id"]):
        exact = cols[EXACT][i]
        fields = None
        if exact is not None:
            keys = all_native.get(exact)
            if keys is not None:
                fields = {key: cols[key][i] for key in keys}
            else:
                spec = json.loads(exact)
                rest = {_key(from_json(k)): from_json(v) for k, v in spec["rest"]}
                order = [_key(from_json(k)) for k in spec["order"]]
                if not rest:
                    all_native[exact] = tuple(order)
                fields = {key: rest[key] if key in rest else cols[key][i] for key in order}
        rows.append(RawRow(row_id, fields, cols["_error"][i], cols["_raw"][i]))
    return rows


def _key(k: Any) -> Any:
    """A decoded key as a dict key (a list key cannot be one; the loaders never yield them)."""
    return tuple(k) if isinstance(k, list) else k


def to_parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic bytes: fixed codec, row groups and no timestamps (Parquet writes none)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=False)
    return sink.getvalue()


def from_parquet_bytes(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data), use_threads=False)  # a worker reads one file per thread already
