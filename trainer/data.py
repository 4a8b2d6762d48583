"""Read a flanmix corpus: check its manifest, load shards, and fix the order of rows for every step.

The trainer trusts nothing it has not checked: `open_corpus` refuses a layout it cannot train, and a
vocabulary or sequence length that differs from what the run expects, naming both values; shard
readers refuse rows whose lengths differ from the manifest's.

Layouts (manifest["layout"]) and the features each one needs, all int32 of fixed length:

    encdec   inputs, inputs_segment_ids, inputs_positions          (sequence_length["inputs"])
             targets, targets_segment_ids, targets_positions       (sequence_length["targets"])
    decoder  targets, targets_segment_ids, targets_positions, loss_mask   (sequence_length["targets"])

(the table is `flanmix_corpus.layouts.LAYOUTS`, shared with the build and checked against schemas/).

Held-out rows: row i of every shard (counted within its file) with i % holdout_every == 0 is used only
for eval loss. A packed row holds whole examples, so no example is in both splits; the rule needs no
extra pass over the data and works for a single-shard corpus (the demo has one shard of 175 rows:
9 held out, 166 trained on).

Batch order: a pure function of (seed, step). Epoch e visits the shards in the order of a
permutation keyed by (seed, e), and the rows of each shard in a permutation keyed by (seed, e, shard).
Resuming at step s therefore needs only s, and the order never depends on the number of hosts.
"""
from __future__ import annotations

import bisect
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np

from flanmix_corpus.layouts import LAYOUTS, Layout
from flanmix_corpus.reader import read_manifest
from flanmix_corpus.tf_example import parse_example
from trainer.errors import CorpusError, CorpusMismatchError

FORMATS = ("parquet", "tfrecord")


@dataclass(frozen=True)
class Shard:
    path: str  # full path or URL of the file
    num_rows: int


@dataclass(frozen=True)
class Corpus:
    """What the trainer knows about a corpus: everything comes from its manifest."""

    root: str
    layout: Layout
    lengths: Mapping[str, int]  # sequence_length key -> length, e.g. {"inputs": 256, "targets": 64}
    vocab_size: int
    vocab_sha256: str
    vocab_path: str
    data_format: str
    shards: tuple[Shard, ...]

    def feature_length(self, feature: str) -> int:
        return self.lengths[dict(self.layout.features)[feature]]

    def summary(self) -> str:
        lengths = "/".join(f"{k} {v}" for k, v in self.lengths.items())
        rows = sum(s.num_rows for s in self.shards)
        return (f"corpus {self.root}: layout {self.layout.name}, {rows} rows in {len(self.shards)} {self.data_format} "
                f"shard(s), lengths {lengths}, vocabulary {self.vocab_size} pieces (sha256 {self.vocab_sha256[:12]})")


def _join(root: str, rel: str) -> str:
    return rel if "://" in rel or rel.startswith("/") else f"{root.rstrip('/')}/{rel}"


def open_corpus(
    root: str,
    data_format: str = "parquet",
    expect_layout: str = "auto",
    expect_lengths: Mapping[str, int] | None = None,
) -> Corpus:
    """Read and check `root/manifest.json`. `expect_lengths` entries of 0 mean "take the manifest's"."""
    if data_format not in FORMATS:
        raise CorpusError(f"unknown data format {data_format!r}; use one of {', '.join(FORMATS)}")
    try:
        manifest = read_manifest(root)
    except Exception as exc:  # noqa: BLE001 - FileSystems raises various IO errors
        raise CorpusError(f"cannot read {root}/manifest.json ({exc}); is {root} a corpus written by `flanmix build`?") from None
    layout_name = manifest.get("layout", "encdec")
    if expect_layout not in ("auto", layout_name):
        raise CorpusMismatchError(
            f"corpus {root} has layout {layout_name!r} but the run expects layout {expect_layout!r} "
            f"(the {expect_layout} model cannot train on {layout_name} rows)")
    if layout_name not in LAYOUTS:
        raise CorpusMismatchError(f"corpus {root} has layout {layout_name!r}; this trainer reads {', '.join(LAYOUTS)}")
    layout = LAYOUTS[layout_name]
    declared = dict(manifest.get("sequence_length") or {})
    lengths = {}
    for key in sorted({k for _, k in layout.features}):
        if key not in declared:
            raise CorpusError(f"corpus {root}: manifest sequence_length {declared} has no {key!r} length, "
                              f"which layout {layout_name} needs")
        lengths[key] = int(declared[key])
        want = (expect_lengths or {}).get(key, 0)
        if want and want != lengths[key]:
            raise CorpusMismatchError(
                f"corpus {root} has {key} length {lengths[key]} but the run expects {key} length {want}; "
                f"rebuild the corpus with that length or train with --{key}_length {lengths[key]} (or 0)")
    vocab = manifest.get("vocabulary") or {}
    if "vocab_size" not in vocab:
        raise CorpusError(f"corpus {root}: manifest has no vocabulary.vocab_size, so the model size cannot be checked")
    shards = tuple(
        Shard(_join(root, f["path"]), int(f["num_rows"]))
        for f in sorted(manifest.get("files", []), key=lambda f: f["path"])
        if f["path"].startswith(f"{data_format}/")
    )
    if not shards:
        raise CorpusError(f"corpus {root}: manifest lists no {data_format}/ shards (try --data_format "
                          f"{'tfrecord' if data_format == 'parquet' else 'parquet'})")
    return Corpus(
        root=root, layout=layout, lengths=lengths,
        vocab_size=int(vocab["vocab_size"]), vocab_sha256=vocab.get("sha256", ""), vocab_path=vocab.get("path", ""),
        data_format=data_format, shards=shards,
    )


def check_model_vocab(corpus: Corpus, model_vocab_size: int) -> None:
    """Token ids index the embedding: a model with fewer rows than the corpus vocabulary is refused."""
    if model_vocab_size < corpus.vocab_size:
        raise CorpusMismatchError(
            f"corpus {corpus.root} uses a vocabulary of {corpus.vocab_size} pieces ({corpus.vocab_path}, "
            f"sha256 {corpus.vocab_sha256[:12]}) but the model has vocab_size {model_vocab_size}; "
            f"use --vocab_size 0 (round the corpus vocabulary up) or at least {corpus.vocab_size}")


# --- shard readers -------------------------------------------------------------------------------

def read_shard(corpus: Corpus, shard: Shard) -> dict[str, np.ndarray]:
    """All rows of one shard as int32 arrays [num_rows, length], checked against the manifest."""
    reader = _read_parquet if corpus.data_format == "parquet" else _read_tfrecord
    arrays = reader(corpus, shard.path)
    for name in corpus.layout.feature_names:
        n = arrays[name].shape[0]
        if n != shard.num_rows:
            raise CorpusMismatchError(f"{shard.path}: has {n} rows but the manifest says {shard.num_rows}")
    return arrays


def _length_error(path: str, feature: str, found, expected: int) -> CorpusMismatchError:
    return CorpusMismatchError(
        f"{path}: feature {feature!r} has rows of length {found} but the manifest's sequence length is {expected}")


def _read_parquet(corpus: Corpus, path: str) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(corpus.layout.feature_names)
    try:
        if "://" in path:
            from apache_beam.io.filesystems import CompressionTypes, FileSystems

            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                source = pa.BufferReader(handle.read())
        else:
            source = path
        schema = pq.read_schema(source)
        missing = [n for n in names if n not in schema.names]
        if missing:
            raise CorpusMismatchError(f"{path}: has no column(s) {missing} that layout {corpus.layout.name} needs "
                                      f"(columns: {schema.names})")
        table = pq.read_table(source, columns=names)
    except (OSError, pa.ArrowException) as exc:
        raise CorpusError(f"cannot read parquet shard {path}: {exc}") from None
    out = {}
    for name in names:
        column = table.column(name).combine_chunks()
        length = corpus.feature_length(name)
        lengths = column.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and (lengths != length).any():
            raise _length_error(path, name, sorted(set(lengths.tolist()))[:5], length)
        out[name] = column.flatten().to_numpy(zero_copy_only=False).astype(np.int32).reshape(len(column), length)
    return out


@functools.lru_cache(maxsize=1)
def _tensorflow():
    """TensorFlow, kept off any GPU so it never takes accelerator memory from JAX."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


def _read_tfrecord(corpus: Corpus, path: str) -> dict[str, np.ndarray]:
    tf = _tensorflow()
    names = corpus.layout.feature_names
    desc = {n: tf.io.FixedLenFeature([corpus.feature_length(n)], tf.int64) for n in names}
    chunks: dict[str, list] = {n: [] for n in names}
    try:
        for batch in tf.data.TFRecordDataset([path]).batch(1024).map(lambda r: tf.io.parse_example(r, desc)):
            for n in names:
                chunks[n].append(batch[n].numpy().astype(np.int32))
    except tf.errors.InvalidArgumentError:
        # Name the offending feature and its real length (TF's message does not say which is expected).
        first = parse_example(next(iter(tf.data.TFRecordDataset([path]))).numpy())
        for n in names:
            if n not in first:
                raise CorpusMismatchError(f"{path}: rows have no feature {n!r} that layout {corpus.layout.name} needs") from None
            if len(first[n]) != corpus.feature_length(n):
                raise _length_error(path, n, len(first[n]), corpus.feature_length(n)) from None
        raise
    except tf.errors.OpError as exc:
        raise CorpusError(f"cannot read tfrecord shard {path}: {exc.message}") from None
    return {n: (np.concatenate(c) if c else np.zeros((0, corpus.feature_length(n)), np.int32)) for n, c in chunks.items()}


# --- row order -----------------------------------------------------------------------------------

def held_out(row: int, holdout_every: int) -> bool:
    return holdout_every > 0 and row % holdout_every == 0


class RowOrder:
    """Maps a position in the endless stream of training rows to (shard index, row index).

    >>> order = RowOrder([5, 3], holdout_every=4, seed=0)   # shard 0 trains rows 1,2,3; shard 1 rows 1,2
    >>> order.epoch_size
    5
    """

    def __init__(self, shard_rows: list[int], holdout_every: int, seed: int):
        self.seed = seed
        self.rows = [np.array([r for r in range(n) if not held_out(r, holdout_every)], np.int64) for n in shard_rows]
        self.epoch_size = int(sum(len(r) for r in self.rows))
        self._epochs: OrderedDict[int, tuple] = OrderedDict()  # a memo of the last two epochs' shard orders

    def _epoch(self, epoch: int):
        if epoch not in self._epochs:
            shard_order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
            starts = np.cumsum([0] + [len(self.rows[s]) for s in shard_order]).tolist()
            self._epochs[epoch] = (shard_order, starts, {})
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def locate(self, position: int) -> tuple[int, int]:
        if self.epoch_size == 0:
            raise CorpusError("the corpus has no training rows (every row is held out for eval)")
        epoch, offset = divmod(position, self.epoch_size)
        shard_order, starts, perms = self._epoch(epoch)
        k = bisect.bisect_right(starts, offset) - 1
        shard = int(shard_order[k])
        if shard not in perms:
            perms[shard] = np.random.default_rng([self.seed, epoch, shard]).permutation(len(self.rows[shard]))
        return shard, int(self.rows[shard][perms[shard][offset - starts[k]]])


class ShardCache:
    """Keeps the last few shards in memory; consecutive positions mostly fall in the same shard."""

    def __init__(self, corpus: Corpus, size: int = 2):
        self.corpus, self.size = corpus, size
        self._cache: OrderedDict[int, dict] = OrderedDict()

    def get(self, index: int) -> dict[str, np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
        else:
            self._cache[index] = read_shard(self.corpus, self.corpus.shards[index])
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return self._cache[index]


def gather(cache: ShardCache, locations: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    names = cache.corpus.layout.feature_names
    rows = {n: [] for n in names}
    for shard, row in locations:
        arrays = cache.get(shard)
        for n in names:
            rows[n].append(arrays[n][row])
    return {n: np.stack(v).astype(np.int32) for n, v in rows.items()}


class TrainBatches:
    """`batch(step)`: this host's share of the global batch for `step` (0-based)."""

    def __init__(self, corpus: Corpus, batch_size: int, holdout_every: int, seed: int,
                 process_index: int = 0, process_count: int = 1):
        if batch_size % process_count:
            raise CorpusError(f"batch size {batch_size} does not divide over {process_count} hosts")
        self.order = RowOrder([s.num_rows for s in corpus.shards], holdout_every, seed)
        self.cache = ShardCache(corpus)
        self.batch_size = batch_size
        self.local = batch_size // process_count
        self.first = process_index * self.local

    def batch(self, step: int) -> dict[str, np.ndarray]:
        start = step * self.batch_size + self.first
        return gather(self.cache, [self.order.locate(p) for p in range(start, start + self.local)])


def eval_batches(corpus: Corpus, batch_size: int, holdout_every: int,
                 process_index: int = 0, process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """All held-out rows in file order, `batch_size` at a time; the last batch is filled with
    all-zero rows, which have segment id 0 everywhere and so carry no loss weight."""
    locations = [(s, r) for s, shard in enumerate(corpus.shards) for r in range(shard.num_rows)
                 if held_out(r, holdout_every)]
    cache = ShardCache(corpus)
    local = batch_size // process_count
    for start in range(0, len(locations), batch_size):
        mine = locations[start:start + batch_size][process_index * local:(process_index + 1) * local]
        batch = gather(cache, mine) if mine else {
            n: np.zeros((0, corpus.feature_length(n)), np.int32) for n in corpus.layout.feature_names}
        pad = local - len(mine)
        if pad:
            batch = {n: np.concatenate([a, np.zeros((pad, a.shape[1]), np.int32)]) for n, a in batch.items()}
        yield batch


def count_held_out(corpus: Corpus, holdout_every: int) -> int:
    return sum(1 for s in corpus.shards for r in range(s.num_rows) if held_out(r, holdout_every))
