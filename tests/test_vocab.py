"""The vocabulary: T5 id convention, shipped default, any model path, deterministic training."""
from __future__ import annotations

import pytest

from pipelines import resources
from pipelines.errors import FlanmixError
from pipelines.vocab import EOS_ID, PAD_ID, Vocabulary, train_vocabulary

TEXTS = [f"sentence number {i} about topic {i % 7} with words alpha beta gamma" for i in range(400)]


def test_default_vocabulary_follows_t5_convention(vocab):
    assert vocab.vocab_size == 8000
    assert vocab._sp.pad_id() == PAD_ID == 0 and vocab._sp.eos_id() == EOS_ID == 1
    ids = vocab.encode_batch(["Let's reason step by step."])[0]
    assert ids and PAD_ID not in ids and EOS_ID not in ids
    assert vocab.decode(ids + [EOS_ID, PAD_ID]) == "Let's reason step by step."


def test_training_is_deterministic_and_any_model_path_loads(tmp_path):
    a = train_vocabulary(TEXTS, tmp_path / "a", vocab_size=300)
    b = train_vocabulary(TEXTS, tmp_path / "b", vocab_size=300)
    assert a.read_bytes() == b.read_bytes()
    loaded = Vocabulary.load(str(a))
    assert loaded.vocab_size == 300 and loaded.path == str(a)


def test_model_with_other_id_convention_is_refused(tmp_path):
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=buf, vocab_size=120, minloglevel=2)
    path = tmp_path / "bos_eos.model"
    path.write_bytes(buf.getvalue())  # sentencepiece's defaults: unk 0, bos 1, eos 2, no pad
    with pytest.raises(FlanmixError, match=r"pad=0 and eos=1"):
        Vocabulary.load(path)


def test_missing_model_names_the_path(tmp_path):
    with pytest.raises(FlanmixError, match="nope.model"):
        Vocabulary.load(tmp_path / "nope.model")


def test_shipped_model_is_reproducible_from_shipped_data(tmp_path):
    """`flanmix vocab train` regenerates the shipped model byte for byte (documented in the README)."""
    from pipelines.cli import main

    assert main(["vocab", "train", "--output", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again.model").read_bytes() == resources.default_vocab_path().read_bytes()


def test_workers_get_the_packaged_default_by_name_and_any_other_model_as_bytes(vocab, tmp_path):
    from pipelines.vocab import shipped_model, worker_vocabulary

    default_path = str(resources.default_vocab_path())
    assert shipped_model(default_path, vocab.model_proto) is None
    loaded = worker_vocabulary(None, default_path, vocab.spec.sha256)
    assert loaded.encode_batch(["Two plus two."]) == vocab.encode_batch(["Two plus two."])
    with pytest.raises(FlanmixError, match="same flanmix version"):
        worker_vocabulary(None, default_path, "0" * 64)  # a worker whose packaged model differs
    copy = tmp_path / "copy.model"  # the same bytes elsewhere are not the packaged default
    copy.write_bytes(vocab.model_proto)
    assert shipped_model(str(copy), vocab.model_proto) == vocab.model_proto
    assert worker_vocabulary(vocab.model_proto, str(copy), vocab.spec.sha256).vocab_size == vocab.vocab_size
