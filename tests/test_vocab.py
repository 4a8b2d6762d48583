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


def test_default_vocabulary_keeps_newlines_and_spaces_of_every_demo_prompt(vocab, text_corpus):
    """Option lists and few-shot separators reach the model as the template wrote them."""
    import glob
    import json

    assert vocab.whitespace == "kept"
    texts = []
    for path in sorted(glob.glob(str(text_corpus[0] / "jsonl" / "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                texts += [record["inputs"], record["targets"]]
    assert len(texts) > 1000 and sum("\n" in t for t in texts) > 100  # the demo has multi-line prompts
    ids = vocab.encode_batch(texts)
    lost = [t for t, i in zip(texts, ids) if vocab.decode(i) != t]
    assert not lost, f"{len(lost)} prompts change under encode/decode, e.g. {lost[0]!r}"


def test_collapse_rule_gives_t5_behaviour_and_says_so(tmp_path):
    multi = [t + "\n\nOptions:\n- yes\n- no" for t in TEXTS]
    kept = Vocabulary.load(train_vocabulary(multi, tmp_path / "kept", vocab_size=300))
    folded = Vocabulary.load(train_vocabulary(multi, tmp_path / "folded", vocab_size=300, whitespace="collapse"))
    text = "Is it?\n\nOptions:\n- yes\n-  no"
    assert kept.decode(kept.encode_batch([text])[0]) == text
    assert folded.decode(folded.encode_batch([text])[0]) == "Is it? Options: - yes - no"
    assert (kept.whitespace, folded.whitespace) == ("kept", "collapsed")
    with pytest.raises(FlanmixError, match="--whitespace must be one of"):
        train_vocabulary(multi, tmp_path / "bad", vocab_size=300, whitespace="squash")


def test_manifest_records_the_vocabulary_whitespace_rule(demo_corpus):
    import json

    manifest = json.loads((demo_corpus[0] / "manifest.json").read_text())
    assert manifest["vocabulary"]["whitespace"] == "kept"
