"""pyarrow, Polars and DuckDB read our Parquet with the schema declared in schemas/, and agree."""
from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.formats import layouts as features

ARROW = {"int32": pa.int32(), "string": pa.string()}
POLARS = {"int32": pl.Int32, "string": pl.String}
DUCKDB = {"int32": "INTEGER", "string": "VARCHAR"}


def declared_columns(layout: str) -> dict[str, str]:
    """{column: element type} from the spec file's parquet section, e.g. {"inputs": "int32"}."""
    columns = {}
    for name, text in features.feature_spec(layout)["parquet"]["columns"].items():
        element = re.fullmatch(r"list<(\w+)>", text)
        assert element, text
        columns[name] = element.group(1)
    return columns


@pytest.mark.parametrize("corpus", ["demo_corpus", "decoder_corpus"])
def test_every_reader_sees_the_declared_schema_and_the_same_values(corpus, request):
    out, _ = request.getfixturevalue(corpus)
    layout = json.loads((out / "manifest.json").read_text())["layout"]
    declared = declared_columns(layout)
    assert list(declared) == [f.name for f in features.arrow_schema(layout)]  # the writer's schema is the spec's
    files = sorted(str(p) for p in (out / "parquet").glob("*.parquet"))
    for path in files:
        schema = pq.read_schema(path)
        assert [(f.name, f.type) for f in schema] == [(n, pa.list_(ARROW[t])) for n, t in declared.items()]
        assert all(not f.nullable for f in schema)
        assert schema.metadata[b"flanmix.layout"] == layout.encode()

    frame = pl.read_parquet(files)
    assert dict(frame.schema) == {n: pl.List(POLARS[t]) for n, t in declared.items()}
    described = duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet({files!r})").fetchall()
    assert [(row[0], row[1]) for row in described] == [(n, DUCKDB[t] + "[]") for n, t in declared.items()]

    arrow_rows = pa.concat_tables([pq.read_table(p) for p in files]).to_pylist()
    assert frame.to_dicts() == arrow_rows
    duck = duckdb.sql(f"SELECT * FROM read_parquet({files!r})")
    duck_rows = [dict(zip(duck.columns, row)) for row in duck.fetchall()]
    assert duck_rows == arrow_rows
    name = "targets_segment_ids"
    nonpad = duckdb.sql(f"SELECT sum(len(list_filter({name}, lambda x: x > 0))) FROM read_parquet({files!r})").fetchall()[0][0]
    assert nonpad == sum(int(np.count_nonzero(r[name])) for r in arrow_rows)
