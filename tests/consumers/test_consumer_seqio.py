"""seqio/T5X: a published corpus registered as a seqio Task yields exactly the rows we wrote, and
pre-packed feature converters turn them into model features without packing again."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import seqio

from pipelines.consumers import seqio_task
from pipelines.errors import FlanmixError

NAMES = ("flanmix_test_encdec", "flanmix_test_decoder", "flanmix_test_replace")


@pytest.fixture(scope="module", autouse=True)
def clean_registry():
    """seqio's TaskRegistry is global: leave it as we found it."""
    assert not any(n in seqio.TaskRegistry.names() for n in NAMES)  # importing registered nothing
    yield
    for name in NAMES:
        if name in seqio.TaskRegistry.names():
            seqio.TaskRegistry.remove(name)


def parquet_rows(out) -> list[dict]:
    return [r for p in sorted((out / "parquet").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def assert_same_rows(task_rows, written):
    assert len(task_rows) == len(written) > 0
    for got, want in zip(task_rows, written):
        assert set(got) == set(want)
        for key, value in want.items():
            if key == "provenance":
                assert [p.decode() for p in got[key]] == value
            else:
                assert got[key].dtype == np.int32 and got[key].tolist() == value, key


def shift_right_by_segment(tokens, segments):
    out = np.zeros_like(tokens)
    out[1:] = tokens[:-1]
    starts = np.r_[True, segments[1:] != segments[:-1]]
    out[starts] = 0
    return out


def test_encdec_task_yields_the_written_rows_and_t5x_converter_accepts_them(demo_corpus):
    out, _ = demo_corpus
    task = seqio_task.register_corpus_as_seqio_task("flanmix_test_encdec", str(out))
    assert seqio.get_mixture_or_task("flanmix_test_encdec") is task
    assert set(task.output_features) == {"inputs", "targets"}
    assert seqio_task.sequence_length(str(out)) == {"inputs": 512, "targets": 128}
    ds = seqio.get_mixture_or_task("flanmix_test_encdec").get_dataset(
        {"inputs": 512, "targets": 128}, split="train", shuffle=False)
    written = parquet_rows(out)
    assert_same_rows(list(ds.as_numpy_iterator()), written)

    converter = seqio_task.feature_converter(str(out))
    assert isinstance(converter, seqio.PrePackedEncDecFeatureConverter) and not converter.pack
    model = converter(ds, seqio_task.task_feature_lengths(str(out)))
    for got, want in zip(model.take(5).as_numpy_iterator(), written):
        targets, tseg = np.array(want["targets"]), np.array(want["targets_segment_ids"])
        assert got["encoder_input_tokens"].tolist() == want["inputs"]
        assert got["encoder_segment_ids"].tolist() == want["inputs_segment_ids"]
        assert got["decoder_target_tokens"].tolist() == want["targets"]
        assert got["decoder_input_tokens"].tolist() == shift_right_by_segment(targets, tseg).tolist()
        assert got["decoder_loss_weights"].tolist() == (targets != 0).astype(int).tolist()
        assert got["decoder_positions"].tolist() == want["targets_positions"]


def test_decoder_task_and_converter_put_the_loss_on_targets_only(decoder_corpus):
    out, _ = decoder_corpus
    seqio_task.register_corpus_as_seqio_task("flanmix_test_decoder", str(out))
    task = seqio.get_mixture_or_task("flanmix_test_decoder")
    assert set(task.output_features) == {"targets"}
    ds = task.get_dataset(seqio_task.sequence_length(str(out)), split="train", shuffle=False)
    written = parquet_rows(out)
    assert_same_rows(list(ds.as_numpy_iterator()), written)

    converter = seqio_task.feature_converter(str(out))
    assert isinstance(converter, seqio_task.PrePackedDecoderFeatureConverter)
    model = converter(ds, seqio_task.task_feature_lengths(str(out)))
    for got, want in zip(model.take(5).as_numpy_iterator(), written):
        tokens, seg = np.array(want["targets"]), np.array(want["targets_segment_ids"])
        assert got["decoder_target_tokens"].tolist() == want["targets"]
        assert got["decoder_input_tokens"].tolist() == shift_right_by_segment(tokens, seg).tolist()
        assert got["decoder_loss_weights"].tolist() == want["loss_mask"]
        assert got["decoder_segment_ids"].tolist() == want["targets_segment_ids"]
        assert got["decoder_positions"].tolist() == want["targets_positions"]
    with pytest.raises(ValueError, match="pack=False"):
        seqio_task.PrePackedDecoderFeatureConverter(pack=True)


def test_registration_is_explicit_and_checked(demo_corpus, text_corpus, tmp_path):
    out, _ = demo_corpus
    seqio_task.register_corpus_as_seqio_task("flanmix_test_replace", str(out))
    with pytest.raises(ValueError):  # seqio refuses a second task of the same name...
        seqio_task.register_corpus_as_seqio_task("flanmix_test_replace", str(out))
    seqio_task.register_corpus_as_seqio_task("flanmix_test_replace", str(out), replace=True)  # ...unless asked
    with pytest.raises(ValueError, match="packed to inputs length 512"):
        seqio.get_mixture_or_task("flanmix_test_replace").get_dataset({"inputs": 256, "targets": 128}, shuffle=False)
    other = tmp_path / "other.model"
    other.write_bytes(b"not the corpus's vocabulary")
    with pytest.raises(FlanmixError, match="sha256"):
        seqio_task.register_corpus_as_seqio_task("flanmix_test_never", str(out), vocabulary_path=str(other))
    with pytest.raises(FlanmixError, match="jsonl"):
        seqio_task.register_corpus_as_seqio_task("flanmix_test_never", str(text_corpus[0]))
    assert "flanmix_test_never" not in seqio.TaskRegistry.names()
