"""Register a published corpus as a seqio Task, for T5X and any other seqio reader.

    import seqio
    from pipelines.consumers import seqio_task

    task = seqio_task.register_corpus_as_seqio_task("flanmix_demo", "out/demo")   # explicit, never at import
    ds = seqio.get_mixture_or_task("flanmix_demo").get_dataset(
        seqio_task.sequence_length("out/demo"), split="train", shuffle=False)      # the rows as written
    model_ds = seqio_task.feature_converter("out/demo")(ds, seqio_task.task_feature_lengths("out/demo"))

The task reads the TFRecord shards (seqio.TFExampleDataSource), its output features and vocabulary
(seqio.SentencePieceVocabulary, checked against the manifest's SHA-256) come from the manifest, and
its rows are already packed: every feature of schemas/packed_<layout>.features.json as int32, plus
`provenance`. Feed them to a converter that does not pack again:

    encdec   seqio.PrePackedEncDecFeatureConverter(pack=False)    (seqio's own)
    decoder  PrePackedDecoderFeatureConverter(pack=False)         (below: loss weights = loss_mask)

T5X (gin), for an encdec corpus at 2048/512:

    train/utils.DatasetConfig.mixture_or_task_name = "flanmix_demo"
    train/utils.DatasetConfig.task_feature_lengths = {"inputs": 2048, "targets": 512,
        "inputs_segment_ids": 2048, "inputs_positions": 2048, "targets_segment_ids": 512, "targets_positions": 512}
    train/utils.DatasetConfig.pack = False
    models.EncoderDecoderModel.feature_converter_cls = @seqio.PrePackedEncDecFeatureConverter

with `register_corpus_as_seqio_task(...)` called from the module T5X imports (`--gin.MIXTURE_OR_TASK_MODULE`).
"""
from __future__ import annotations

import hashlib
from typing import Mapping

import seqio
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from pipelines.formats import layouts as features
from flanmix_corpus.reader import CorpusInfo, open_corpus
from pipelines.errors import FlanmixError

_FC = seqio.FeatureConverter


class PrePackedDecoderFeatureConverter(seqio.FeatureConverter):
    """Decoder-only rows that flanmix already packed (layout "decoder") -> seqio/T5X decoder features.

        targets              71  9  1  5  1  0     decoder_target_tokens  71  9  1  5  1  0
        targets_segment_ids   1  1  1  1  1  0     decoder_input_tokens    0 71  9  1  5  0
        targets_positions     0  1  2  3  4  0     decoder_loss_weights    0  0  0  1  1  0
        loss_mask             0  0  0  1  1  0     decoder_segment_ids / decoder_positions: copied

    Loss only on target tokens (the mask), inputs shifted right within each segment.
    Packing again is refused: `pack` must be False.
    """

    TASK_FEATURES = {name: _FC.FeatureSpec(dtype=tf.int32) for name in features.int_features("decoder")}
    MODEL_FEATURES = {
        name: _FC.FeatureSpec(dtype=tf.int32)
        for name in ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights",
                     "decoder_segment_ids", "decoder_positions")
    }
    PACKING_FEATURE_DTYPES = {}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.pack:
            raise ValueError("PrePackedDecoderFeatureConverter reads rows flanmix already packed; pass pack=False")

    def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
        def convert(row):
            return {
                "decoder_target_tokens": row["targets"],
                "decoder_input_tokens": seqio.utils.make_autoregressive_inputs(
                    row["targets"], sequence_id=row["targets_segment_ids"], bos_id=self.bos_id),
                "decoder_loss_weights": row["loss_mask"],
                "decoder_segment_ids": row["targets_segment_ids"],
                "decoder_positions": row["targets_positions"],
            }

        ds = seqio.utils.trim_and_pad_dataset(ds, task_feature_lengths)
        return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
        length = task_feature_lengths["targets"]
        return {name: length for name in self.MODEL_FEATURES}


def _info(corpus) -> CorpusInfo:
    info = corpus if isinstance(corpus, CorpusInfo) else open_corpus(corpus)
    info.require_packed()
    return info


def sequence_length(corpus) -> dict[str, int]:
    """What to pass to `Task.get_dataset`: the manifest's lengths, e.g. {"inputs": 2048, "targets": 512}."""
    return dict(_info(corpus).sequence_length)


def task_feature_lengths(corpus) -> dict[str, int]:
    """What a pre-packed converter needs: every packed feature's length."""
    return _info(corpus).feature_lengths()


def feature_converter(corpus, **kwargs) -> seqio.FeatureConverter:
    """The converter for the corpus's layout, never packing again (see the module docstring)."""
    cls = {"encdec": seqio.PrePackedEncDecFeatureConverter, "decoder": PrePackedDecoderFeatureConverter}[_info(corpus).layout]
    return cls(pack=False, **kwargs)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def corpus_vocabulary(corpus, vocabulary_path: str | None = None) -> seqio.SentencePieceVocabulary:
    """The manifest's SentencePiece model (or `vocabulary_path`), refused if its SHA-256 differs."""
    info = _info(corpus)
    spec = info.manifest["vocabulary"]
    path = vocabulary_path or spec["path"]
    try:
        found = _sha256(path)
    except Exception as exc:  # noqa: BLE001 - FileSystems raises scheme-specific errors
        raise FlanmixError(f"cannot read the vocabulary {path} of corpus {info.root} ({exc}); "
                           f"pass vocabulary_path=") from None
    if found != spec["sha256"]:
        raise FlanmixError(f"vocabulary {path} has sha256 {found}; corpus {info.root} was tokenized with "
                           f"sha256 {spec['sha256']}")
    return seqio.SentencePieceVocabulary(path)


def _lengths_check(expected: Mapping[str, int]):
    def check_sequence_length(dataset: tf.data.Dataset, sequence_length=None) -> tf.data.Dataset:
        for key, want in (sequence_length or {}).items():
            if key in expected and want is not None and int(want) != expected[key]:
                raise ValueError(f"this corpus was packed to {key} length {expected[key]}; a packed row cannot be "
                                 f"read at length {want} (get_dataset(sequence_length={dict(expected)}))")
        return dataset

    return check_sequence_length


def register_corpus_as_seqio_task(
    name: str,
    corpus_dir: str,
    *,
    vocabulary_path: str | None = None,
    cycle_length: int = 1,
    shuffle_buffer_size: int | None = 10_000,
    replace: bool = False,
) -> seqio.Task:
    """Add a Task named `name` to seqio's (global) TaskRegistry that yields the corpus's packed rows.

    `cycle_length=1` reads the shards one after another, so with `shuffle=False` the task yields exactly
    the rows of the TFRecord (and Parquet) shards, in order; raise it to interleave shards for speed.
    `replace=True` replaces a task already registered under `name`.
    """
    info = _info(corpus_dir)
    vocab = corpus_vocabulary(info, vocabulary_path)
    split = info.manifest["split"]
    source = seqio.TFExampleDataSource(
        split_to_filepattern={split: info.files("tfrecord")},
        feature_description=features.feature_description(info.layout, info.sequence_length),
        num_input_examples={split: int(info.manifest["num_rows"])},
        cycle_length=cycle_length,
    )
    text_features = ("inputs", "targets") if info.layout == "encdec" else ("targets",)
    output_features = {f: seqio.Feature(vocab, add_eos=True, dtype=tf.int32) for f in text_features}
    names = features.int_features(info.layout)

    def to_rows(dataset: tf.data.Dataset) -> tf.data.Dataset:
        """int64 -> int32, provenance (sparse) -> dense strings: the row as written."""
        def convert(parsed):
            row = {n: tf.cast(parsed[n], tf.int32) for n in names}
            row["provenance"] = tf.sparse.to_dense(parsed["provenance"], default_value=b"")
            return row

        return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    if replace and name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    return seqio.TaskRegistry.add(
        name,
        source=source,
        output_features=output_features,
        preprocessors=[to_rows, _lengths_check(info.sequence_length)],
        shuffle_buffer_size=shuffle_buffer_size,
        metric_fns=[],
    )
