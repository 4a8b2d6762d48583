"""Our protobuf-only tf.train.Example writer produces what TensorFlow parses (and byte-equal)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines.tf_example import parse_example, serialize_example


def test_tensorflow_parses_our_examples_and_bytes_match_tf_own_serialization():
    ints = {"targets": np.array([5, 1, 0], np.int32), "inputs": np.array([7, 8, 1, 0], np.int32)}
    data = serialize_example(ints, {"provenance": [b"x|y|1", "ü".encode()]})
    parsed = tf.io.parse_single_example(data, {
        "inputs": tf.io.FixedLenFeature([4], tf.int64),
        "targets": tf.io.FixedLenFeature([3], tf.int64),
        "provenance": tf.io.VarLenFeature(tf.string),
    })
    assert parsed["inputs"].numpy().tolist() == [7, 8, 1, 0]
    assert parsed["targets"].numpy().tolist() == [5, 1, 0]
    assert parsed["provenance"].values.numpy().tolist() == [b"x|y|1", "ü".encode()]

    theirs = tf.train.Example(features=tf.train.Features(feature={
        "inputs": tf.train.Feature(int64_list=tf.train.Int64List(value=[7, 8, 1, 0])),
        "targets": tf.train.Feature(int64_list=tf.train.Int64List(value=[5, 1, 0])),
        "provenance": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x|y|1", "ü".encode()])),
    }))
    assert theirs.SerializeToString(deterministic=True) == data
    assert parse_example(data)["inputs"] == [7, 8, 1, 0]
