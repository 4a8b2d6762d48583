"""Readers of a published corpus for other trainers and tools. Each module imports its framework only
when imported itself, and nothing is registered anywhere until you call a function.

    pipelines.consumers.tfdata      read_tfrecord_dataset(corpus_dir)       -> tf.data.Dataset of rows
    pipelines.consumers.seqio_task  register_corpus_as_seqio_task(name, dir) -> seqio.Task (T5X)
    pipelines.consumers.hf          load_corpus(dir) / load_text(dir)        -> datasets.Dataset

Polars, DuckDB and pyarrow read `parquet/*.parquet` directly; the columns are declared in
schemas/packed_<layout>.features.json (see README, "Layouts and consumers").
"""
from __future__ import annotations

from flanmix_corpus.reader import CorpusInfo, open_corpus  # noqa: F401 (plain Python, no framework)
