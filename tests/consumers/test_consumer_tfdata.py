"""tf.data: the documented reader and feature_description give back the Parquet rows exactly."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from flanmix_corpus.layouts import length_key
from pipelines.formats import layouts as features
from pipelines.consumers.tfdata import read_tfrecord_dataset
from pipelines.errors import FlanmixError


@pytest.mark.parametrize("corpus", ["demo_corpus", "decoder_corpus"])
def test_read_tfrecord_dataset_equals_the_parquet_rows(corpus, request):
    out, _ = request.getfixturevalue(corpus)
    manifest = json.loads((out / "manifest.json").read_text())
    ds = read_tfrecord_dataset(str(out))
    names = features.int_features(manifest["layout"])
    assert set(ds.element_spec) == {*names, "provenance"}
    for name in names:
        length = manifest["sequence_length"][length_key(name)]
        assert ds.element_spec[name] == tf.TensorSpec([length], tf.int32)
    written = [r for p in sorted((out / "parquet").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    got = list(ds.as_numpy_iterator())
    assert len(got) == len(written) == manifest["num_rows"]
    for a, b in zip(got, written):
        assert [p.decode() for p in a["provenance"]] == b["provenance"]
        for name in names:
            assert np.array_equal(a[name], b[name]), name


def test_feature_description_matches_the_declared_spec():
    for layout in ("encdec", "decoder"):
        spec = features.feature_spec(layout)
        desc = features.feature_description(layout, {"inputs": 8, "targets": 4})
        assert list(desc) == list(spec["features"])
        for name, feature in spec["features"].items():
            if feature["tf_example"] == "int64_list":
                assert desc[name] == tf.io.FixedLenFeature([{"inputs_length": 8, "targets_length": 4}[feature["shape"][0]]], tf.int64)
            else:
                assert desc[name] == tf.io.VarLenFeature(tf.string)


def test_reader_refuses_a_text_export(text_corpus):
    with pytest.raises(FlanmixError, match="jsonl"):
        read_tfrecord_dataset(str(text_corpus[0]))
