"""The packed layouts in the writers' formats: Arrow schema and tables, TF Examples, TF feature
descriptions. What each layout holds is declared once in `flanmix_corpus.layouts` (constants: Beam
workers never read the schemas/ directory; a test checks that they equal the files in schemas/).
"""
from __future__ import annotations

import functools
import json
from typing import Mapping

import numpy as np
import pyarrow as pa

from flanmix_corpus.layouts import LAYOUT_DECODER, LAYOUT_ENCDEC, LAYOUTS, feature_lengths
from flanmix_corpus.tf_example import serialize_examples
from pipelines import resources
from pipelines.formats.rows import PackedBatch

FEATURE_SPEC_FILE = {LAYOUT_ENCDEC: "packed_encdec.features.json", LAYOUT_DECODER: "packed_decoder.features.json"}
TEXT_EXPORT_SCHEMA_FILE = "text_export.schema.json"


def _check(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return layout


@functools.lru_cache(maxsize=None)
def feature_spec(layout: str = LAYOUT_ENCDEC) -> dict:
    """The layout's declaration from schemas/ (launcher and tests only)."""
    return json.loads((resources.schemas_dir() / FEATURE_SPEC_FILE[_check(layout)]).read_text(encoding="utf-8"))


def feature_spec_path(layout: str) -> str:
    """The declaration a manifest names, relative to the project: `schemas/packed_<layout>.features.json`."""
    return "schemas/" + FEATURE_SPEC_FILE[_check(layout)]


def int_features(layout: str = LAYOUT_ENCDEC) -> tuple[str, ...]:
    """The int32 features of a row, in declaration order (provenance comes after them)."""
    return LAYOUTS[_check(layout)].feature_names


def arrow_schema(layout: str = LAYOUT_ENCDEC) -> pa.Schema:
    """Declared, never inferred from data (so an empty shard has the same schema as a full one)."""
    fields = [pa.field(name, pa.list_(pa.int32()), nullable=False) for name in int_features(layout)]
    fields.append(pa.field("provenance", pa.list_(pa.string()), nullable=False))
    return pa.schema(fields, metadata={"flanmix.layout": layout})


def to_tf_examples(batch: PackedBatch) -> list[bytes]:
    """One serialized tf.train.Example per row: every int feature as int64_list, provenance as bytes_list."""
    return serialize_examples(
        {name: batch.arrays[name] for name in int_features(batch.layout)},
        {"provenance": [[p.encode("utf-8") for p in row] for row in batch.provenance]},
    )


# Arrow arrays are built from buffers: `pa.array` on numpy arrays or Python lists first checks
# for pandas objects, and that check imports pandas (about 0.35 s, more than writing a shard).

def _int32_array(values: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(values, np.int32)
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])


def _ends(counts: np.ndarray) -> np.ndarray:
    """Arrow offsets: 0, then the running total of `counts`."""
    ends = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=ends[1:])
    return ends


def _offsets(counts: np.ndarray) -> pa.Array:
    return _int32_array(_ends(counts))


def _int_lists(matrix: np.ndarray) -> pa.Array:
    """list<int32> over the rows of a (rows, length) matrix, sharing its memory."""
    rows, length = matrix.shape
    return pa.ListArray.from_arrays(_offsets(np.full(rows, length, np.int32)), _int32_array(matrix.ravel()))


def _string_lists(rows: tuple[tuple[str, ...], ...]) -> pa.Array:
    """list<string> of each row's provenance strings."""
    encoded = [p.encode("utf-8") for row in rows for p in row]
    strings = pa.Array.from_buffers(pa.string(), len(encoded), [
        None, pa.py_buffer(_ends(np.fromiter(map(len, encoded), np.int32, len(encoded)))),
        pa.py_buffer(b"".join(encoded)),
    ])
    return pa.ListArray.from_arrays(_offsets(np.fromiter(map(len, rows), np.int32, len(rows))), strings)


def to_arrow_table(batches: list[PackedBatch], layout: str = LAYOUT_ENCDEC) -> pa.Table:
    """One table over the batches' rows in order, with the declared schema (also when there are none)."""
    schema = arrow_schema(layout)
    tables = []
    for batch in batches:
        if batch.layout != layout:
            raise ValueError(f"a {batch.layout} batch in a {layout} table")
        arrays = [_int_lists(batch.arrays[name]) for name in int_features(layout)]
        arrays.append(_string_lists(batch.provenance))
        tables.append(pa.Table.from_arrays(arrays, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def feature_description(layout: str, sequence_length: Mapping[str, int]):
    """`feature_description` for `tf.io.parse_single_example` on a layout's TFRecords (imports TF).

    Every int feature is `FixedLenFeature([length], tf.int64)` (TFRecord stores int64; cast to int32
    after parsing); provenance is `VarLenFeature(tf.string)`, one entry per segment."""
    import tensorflow as tf

    desc = {name: tf.io.FixedLenFeature([length], tf.int64) for name, length in feature_lengths(layout, sequence_length).items()}
    desc["provenance"] = tf.io.VarLenFeature(tf.string)
    return desc


def tf_feature_description(inputs_length: int, targets_length: int):
    """`feature_description` of the encdec layout (see `feature_description` for any layout)."""
    return feature_description(LAYOUT_ENCDEC, {"inputs": inputs_length, "targets": targets_length})
