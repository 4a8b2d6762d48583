"""The snapshot row encoding: every value a loader can yield comes back with its Python type."""
from __future__ import annotations

import datetime
import math

import pytest

from pipelines.loaders.base import RawRow
from pipelines.sources import encoding

DECLARED = {"s": "string", "i": "int", "f": "float", "b": "bool", "ls": "list[string]", "li": "list[int]",
            "o": "object", "lo": "list[object]"}


def typed(value):
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, repr(value))


def round_trip(rows, declared=DECLARED):
    data = encoding.to_parquet_bytes(encoding.encode_rows(rows, declared))
    return encoding.decode_table(encoding.from_parquet_bytes(data)), data


def test_hostile_values_keep_their_types_and_key_order():
    rows = [
        RawRow("r1", {"s": "plain", "i": 3, "f": 1.5, "b": True, "ls": ["a"], "li": [1, 2], "o": {"k": 1}, "lo": [{"x": None}]}),
        RawRow("r2", {"f": 2, "i": True, "s": None, "b": 0, "ls": ("t", "u"), "li": [1, 2.0], "extra": b"\xff\x00"}),
        RawRow("r3", {"i": 2 ** 70, "f": float("nan"), "g": float("-inf"), "h": -0.0, "s": "lone \ud800 surrogate",
                      "o": {1: "int key", (1, 2): "tuple key"}, "ls": ["é", "\udfff"]}),
        RawRow("r4", {}),
        RawRow("r5", None, "line 5: not valid JSON", "{oops"),
    ]
    back, _ = round_trip(rows)
    assert [(r.row_id, typed(r.fields), r.error, r.raw) for r in back] == \
           [(r.row_id, typed(r.fields), r.error, r.raw) for r in rows]
    assert math.copysign(1, back[2].fields["h"]) == -1


def test_declared_values_are_native_columns_others_are_not():
    rows = [RawRow("a", {"s": "x", "i": 1, "f": 1.0, "ls": ["p"]}), RawRow("b", {"s": "y", "i": None, "f": 2, "ls": []})]
    table = encoding.from_parquet_bytes(round_trip(rows)[1])
    assert table.column_names == ["_row_id", "_error", "_raw", "s", "i", "f", "b", "ls", "li", "_exact"]
    assert table.column("i").to_pylist() == [1, None] and table.column("f").to_pylist() == [1.0, None]
    assert str(table.schema.field("i").type) == "int64" and str(table.schema.field("ls").type) == "list<element: string>"


def test_a_value_of_another_type_is_refused_naming_the_field():
    with pytest.raises(encoding.EncodeError, match="row a field 'when': a value of type datetime.date"):
        encoding.encode_rows([RawRow("a", {"when": datetime.date(2020, 1, 1)})], {})


def test_same_rows_same_bytes():
    rows = [RawRow(f"r{i}", {"s": str(i), "i": i}) for i in range(100)]
    assert round_trip(rows)[1] == round_trip(list(rows))[1]
