"""Read a packed corpus's TFRecord shards with tf.data.

    >>> ds = read_tfrecord_dataset("out/demo")           # doctest: +SKIP
    >>> row = next(iter(ds))                              # doctest: +SKIP
    >>> {k: v.shape for k, v in row.items()}              # doctest: +SKIP
    {'inputs': (2048,), ..., 'targets_positions': (512,), 'provenance': (3,)}

Each row is a dict of int32 tensors of fixed length (the features of the manifest's layout, declared
in schemas/packed_<layout>.features.json) plus `provenance`, a string tensor with one
"dataset|template_id|prompt_setting|row_id" per segment. To parse yourself:
`pipelines.formats.layouts.feature_description(layout, sequence_length)` is the `feature_description` for
`tf.io.parse_single_example` (int features are stored as int64 lists; cast them to int32).
"""
from __future__ import annotations

import tensorflow as tf

from pipelines.formats import layouts as features
from flanmix_corpus.reader import CorpusInfo, open_corpus


def parse_fn(info: CorpusInfo, with_provenance: bool = True):
    """A function from one serialized tf.train.Example to a row dict (int32 features, dense provenance)."""
    desc = features.feature_description(info.layout, info.sequence_length)
    names = features.int_features(info.layout)

    def parse(record):
        parsed = tf.io.parse_single_example(record, desc)
        row = {name: tf.cast(parsed[name], tf.int32) for name in names}
        if with_provenance:
            row["provenance"] = tf.sparse.to_dense(parsed["provenance"], default_value=b"")
        return row

    return parse


def read_tfrecord_dataset(corpus_dir: str, with_provenance: bool = True) -> tf.data.Dataset:
    """Every row of the corpus, shard after shard in the order they were written (no shuffling)."""
    info = open_corpus(corpus_dir)
    info.require_packed()
    files = info.files("tfrecord")
    return tf.data.TFRecordDataset(files).map(parse_fn(info, with_provenance), num_parallel_calls=tf.data.AUTOTUNE,
                                              deterministic=True)
