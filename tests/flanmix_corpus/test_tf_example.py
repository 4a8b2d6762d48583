"""Our protobuf-only tf.train.Example writer produces what TensorFlow parses (and byte-equal)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from flanmix_corpus.tf_example import parse_example, serialize_example, serialize_examples


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


def test_batch_writer_matches_the_protobuf_runtime_byte_for_byte():
    """serialize_examples hand-writes the wire format; protobuf's own serializer is the reference,
    on values of every varint width (negative and 64-bit included), empty lists, empty batches and
    keys that prefix each other (the map order protobuf uses for them is not plain bytewise)."""
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(0, 6))
        high = int(rng.choice([2, 200, 20_000, 3_000_000, 2**40]))
        low = -5 if trial % 5 == 0 else 0
        names = ["inputs", "inputs_positions", "b", "a", "targets_segment_ids", "targets"]
        ints = {k: [rng.integers(low, high, int(rng.integers(0, 9))) for _ in range(n)] for k in names}
        text = {"provenance": [[bytes(rng.integers(0, 256, int(rng.integers(0, 300))).astype(np.uint8))
                                for _ in range(int(rng.integers(0, 3)))] for _ in range(n)]}
        want = [serialize_example({k: v[i] for k, v in ints.items()}, {k: v[i] for k, v in text.items()}) for i in range(n)]
        assert serialize_examples(ints, text) == want, f"trial {trial}"
    matrix = rng.integers(0, 32_000, (4, 16)).astype(np.int32)  # the build passes (rows, length) matrices
    assert serialize_examples({"inputs": matrix}) == [serialize_example({"inputs": r}) for r in matrix]
    with pytest.raises(ValueError, match="disagree"):
        serialize_examples({"a": [np.ones(2)], "b": []})
