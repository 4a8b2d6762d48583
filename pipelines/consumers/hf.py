"""Load a corpus with Hugging Face `datasets` (its own Parquet and JSON builders; nothing custom).

    >>> ds = load_corpus("out/demo")                      # doctest: +SKIP
    >>> ds.features["inputs"], ds.num_rows                 # doctest: +SKIP
    (List(Value('int32')), 227)

`load_corpus` is `datasets.load_dataset("parquet", data_files=[the Parquet shards], split=...)` with the
columns declared in schemas/packed_<layout>.features.json; `load_text` reads a `--format jsonl`
export with `load_dataset("json", ...)`. Rows come in shard order, as written. Offline use: set
HF_DATASETS_OFFLINE=1 (the builders need no download).
"""
from __future__ import annotations

import datasets

from pipelines.formats import layouts as features
from flanmix_corpus.reader import open_corpus

TEXT_COLUMNS = ("id", "dataset", "collection", "template_id", "prompt_setting", "row_id", "inputs", "targets")


def hf_features(layout: str) -> datasets.Features:
    """The declared columns as `datasets.Features`: list<int32> per int feature, list<string> provenance."""
    cols = {name: datasets.List(datasets.Value("int32")) for name in features.int_features(layout)}
    cols["provenance"] = datasets.List(datasets.Value("string"))
    return datasets.Features(cols)


def load_corpus(corpus_dir: str, split: str | None = None, **kwargs) -> datasets.Dataset:
    """The packed rows of a corpus as a `datasets.Dataset` (split name: the manifest's, e.g. "train")."""
    info = open_corpus(corpus_dir)
    info.require_packed()
    split = split or info.manifest["split"]
    return datasets.load_dataset("parquet", data_files={split: info.files("parquet")}, split=split,
                                 features=hf_features(info.layout), **kwargs)


def load_text(corpus_dir: str, split: str | None = None, **kwargs) -> datasets.Dataset:
    """The examples of a `--format jsonl` export (schemas/text_export.schema.json) as a `datasets.Dataset`."""
    info = open_corpus(corpus_dir)
    split = split or info.manifest["split"]
    cols = datasets.Features({c: datasets.Value("string") for c in TEXT_COLUMNS})
    return datasets.load_dataset("json", data_files={split: info.files("jsonl")}, split=split, features=cols, **kwargs)
