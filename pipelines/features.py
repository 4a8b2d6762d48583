"""The packed output layout as declared in schemas/packed_encdec.features.json, for each writer."""
from __future__ import annotations

import functools
import json

import pyarrow as pa

from pipelines import resources
from pipelines.packing import FEATURES, PackedRow
from pipelines.tf_example import serialize_example

LAYOUT_ENCDEC = "encdec"
FEATURE_SPEC_FILE = {LAYOUT_ENCDEC: "packed_encdec.features.json"}


@functools.lru_cache(maxsize=None)
def feature_spec(layout: str = LAYOUT_ENCDEC) -> dict:
    return json.loads((resources.schemas_dir() / FEATURE_SPEC_FILE[layout]).read_text(encoding="utf-8"))


def arrow_schema() -> pa.Schema:
    """Declared, never inferred from data (so an empty shard has the same schema as a full one)."""
    fields = [pa.field(name, pa.list_(pa.int32()), nullable=False) for name in FEATURES]
    fields.append(pa.field("provenance", pa.list_(pa.string()), nullable=False))
    return pa.schema(fields, metadata={"flanmix.layout": LAYOUT_ENCDEC})


def to_tf_example(row: PackedRow) -> bytes:
    return serialize_example(
        {name: row.arrays[name] for name in FEATURES},
        {"provenance": [p.encode("utf-8") for p in row.provenance]},
    )


def to_arrow_table(rows: list[PackedRow]) -> pa.Table:
    columns = {name: [r.arrays[name] for r in rows] for name in FEATURES}
    arrays = [pa.array(columns[name], type=pa.list_(pa.int32())) for name in FEATURES]
    arrays.append(pa.array([list(r.provenance) for r in rows], type=pa.list_(pa.string())))
    return pa.Table.from_arrays(arrays, schema=arrow_schema())


def tf_feature_description(inputs_length: int, targets_length: int):
    """`feature_description` for `tf.io.parse_single_example` on our TFRecords (imports TF)."""
    import tensorflow as tf

    desc = {}
    for name in FEATURES:
        length = inputs_length if name.startswith("inputs") else targets_length
        desc[name] = tf.io.FixedLenFeature([length], tf.int64)
    desc["provenance"] = tf.io.VarLenFeature(tf.string)
    return desc
