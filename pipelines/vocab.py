"""SentencePiece vocabulary with the T5 id convention (pad 0, EOS 1, unk 2).

Any SentencePiece model works, local or remote (gs://, s3://), e.g. T5's
`gs://t5-data/vocabs/cc_all.32000/sentencepiece.model`. The model bytes travel inside the Beam
transform, so workers never read the path themselves (`shipped_model`); only the default model,
which ships inside the package every worker installs, travels by name. It was trained from the
shipped data by `flanmix vocab train` (see README, "The default vocabulary").
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import FlanmixError

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2


@dataclass(frozen=True)
class VocabSpec:
    """What a build records about its vocabulary (and what a trainer checks)."""

    path: str
    sha256: str
    vocab_size: int


class Vocabulary:
    """Wraps a SentencePiece processor; build with `Vocabulary.load(path)` or `from_bytes`."""

    def __init__(self, model_proto: bytes, path: str = "<bytes>"):
        self.model_proto = model_proto
        self.path = path
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
            if self._sp.get_piece_size() == 0:  # an empty file parses as an empty model
                raise RuntimeError("no pieces")
        except RuntimeError:  # truncated, random bytes, another kind of file
            raise FlanmixError(f"vocabulary {path}: not a SentencePiece model ({len(model_proto)} bytes that do not "
                               f"parse as one; truncated, or another kind of file?)") from None
        if self._sp.pad_id() != PAD_ID or self._sp.eos_id() != EOS_ID:
            raise FlanmixError(
                f"vocabulary {path}: pad/eos ids are {self._sp.pad_id()}/{self._sp.eos_id()}; "
                f"flanmix (like T5) needs pad={PAD_ID} and eos={EOS_ID}"
            )

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        path = str(path)
        try:
            with FileSystems.open(path) as handle:
                data = handle.read()
        except Exception as exc:  # noqa: BLE001 - FileSystems raises various IO errors
            raise FlanmixError(f"cannot read SentencePiece model {path}: {exc}") from None
        return cls(data, path)

    @property
    def spec(self) -> VocabSpec:
        return VocabSpec(self.path, hashlib.sha256(self.model_proto).hexdigest(), self.vocab_size)

    @property
    def whitespace(self) -> str:
        """"kept" when newlines, tabs and repeated spaces survive encode/decode, "collapsed" when the model
        folds them into single spaces (T5's vocabularies and SentencePiece's `nmt_nfkc` default do). Probed
        by behaviour rather than read from the normalizer spec, so any model answers truthfully."""
        probe = "a\n\nb  c\td"
        return "kept" if self.decode(self.encode_batch([probe])[0]) == probe else "collapsed"

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode_batch(self, texts: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids without EOS (the caller appends it after truncation)."""
        return self._sp.encode(list(texts), out_type=int, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) not in (PAD_ID, EOS_ID)])


def shipped_model(vocab_path: str, model_proto: bytes) -> bytes | None:
    """What a job's DoFns carry of the model: None for the packaged default, which every worker
    loads from its own flanmix install (`worker_vocabulary`), else the bytes. Beam bz2-compresses
    each pickled DoFn; for the 380 KB default model that was about 0.1 s per tokenizing DoFn."""
    from pipelines import resources

    packaged = resources.default_vocab_path()
    if vocab_path == str(packaged) and packaged.read_bytes() == model_proto:
        return None
    return model_proto


def worker_vocabulary(model_proto: bytes | None, path: str, sha256: str) -> Vocabulary:
    """The vocabulary a DoFn was given by `shipped_model`; checks a packaged default by its hash."""
    if model_proto is not None:
        return Vocabulary(model_proto, path)
    from pipelines import resources

    vocab = Vocabulary(resources.default_vocab_path().read_bytes(), path)
    if vocab.spec.sha256 != sha256:
        raise FlanmixError(
            f"this worker's flanmix ships a default vocabulary with sha256 {vocab.spec.sha256}, the launcher's "
            f"has {sha256}: install the same flanmix version on the workers, or pass --vocab with a gs:// path"
        )
    return vocab


WHITESPACE_RULES = {
    # Lossless: no normalisation, whitespace kept as written, so option lists and few-shot separators
    # reach the model as the template wrote them (decode(encode(text)) == text for any text).
    "keep": dict(normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True),
    # T5's behaviour: NFKC plus newlines/tabs folded into spaces and runs of spaces collapsed.
    "collapse": dict(normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True),
}


def train_vocabulary(texts: Iterable[str], model_prefix: str | Path, vocab_size: int = 8000, seed_sentences: int = 200_000,
                     whitespace: str = "keep") -> Path:
    """Train a deterministic T5-convention unigram model (single thread, fixed sampling off).

    `whitespace` picks a rule of `WHITESPACE_RULES`; the default keeps newlines and spaces."""
    if whitespace not in WHITESPACE_RULES:
        raise FlanmixError(f"vocab train: --whitespace must be one of {sorted(WHITESPACE_RULES)}, not {whitespace!r}")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=0.9995,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        input_sentence_size=seed_sentences,
        shuffle_input_sentence=False,
        num_threads=1,
        byte_fallback=True,
        split_digits=True,
        minloglevel=2,
        **WHITESPACE_RULES[whitespace],
    )
    out = Path(str(model_prefix) + ".model")
    out.write_bytes(buffer.getvalue())
    return out
