"""`flanmix inspect DIR`: packed rows back to text, segment by segment, with each segment's provenance,
so anyone can see exactly what a model trained on the corpus reads.

    flanmix inspect out/demo                      the first row
    flanmix inspect out/demo --row 12 -n 2        rows 12 and 13 (0-based, counted over shards in order)
    flanmix inspect out/demo --dataset cot_gsm8k -n 3   the first 3 examples of one dataset
    flanmix inspect gs://bucket/corpus --from tfrecord --json

Rows are read from the Parquet shards (or `--from tfrecord`), local or in a bucket, through the
corpus reader (`consumers.corpus`); both packed layouts are understood (`packing.unpack_row`: encdec
segment ids, decoder segment ids plus loss mask). Text is decoded with the vocabulary the manifest
names, checked by SHA-256 (`--vocab` for a copy elsewhere; the packaged default is found by hash).
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import resources
from flanmix_corpus.reader import CorpusInfo, open_corpus
from pipelines.errors import FlanmixError
from pipelines.formats.rows import unpack_row
from pipelines.vocab import Vocabulary

EOS_ID = 1
SOURCES = ("parquet", "tfrecord")


@dataclass(frozen=True)
class Segment:
    """One example inside a packed row: where it sits, where it came from, and its text."""

    row: int  # 0-based over the corpus, shards in order
    file: str  # the shard, relative to the corpus
    row_in_file: int
    segment: int  # 1-based segment id within the row
    dataset: str
    template_id: str
    prompt_setting: str
    row_id: str
    inputs_tokens: int  # EOS included, as packed
    targets_tokens: int
    inputs: str
    targets: str

    @property
    def key(self) -> str:
        """The example's id, as `--format jsonl` and the provenance feature write it."""
        return f"{self.dataset}|{self.template_id}|{self.prompt_setting}|{self.row_id}"


# --- vocabulary ------------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corpus_vocabulary(info: CorpusInfo, override: str | None = None) -> Vocabulary:
    """The SentencePiece model the corpus was tokenized with: `override`, else the manifest's path,
    else the packaged default model, whichever has the manifest's SHA-256."""
    spec = info.manifest["vocabulary"]
    tried = []
    for path in [override] if override else [spec["path"], str(resources.default_vocab_path())]:
        try:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                data = handle.read()
        except Exception as exc:  # noqa: BLE001 - FileSystems raises scheme-specific errors
            tried.append(f"{path}: unreadable ({exc.__class__.__name__})")
            continue
        if _sha256(data) == spec["sha256"]:
            return Vocabulary(data, path)
        tried.append(f"{path}: sha256 {_sha256(data)[:12]}...")
    raise FlanmixError(f"corpus {info.root} was tokenized with vocabulary sha256 {spec['sha256']} "
                       f"({spec['path']}); none found ({'; '.join(tried)}); pass --vocab PATH")


# --- rows ------------------------------------------------------------------------------------------

def _open(path: str):
    try:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as exc:  # noqa: BLE001
        raise FlanmixError(f"cannot read shard {path}: {exc}") from None


def _parquet_rows(path: str, skip: int) -> Iterator[tuple[dict, list[str]]]:
    import pyarrow.parquet as pq

    with _open(path) as handle:
        data = pq.ParquetFile(io.BytesIO(handle.read()))
    seen = 0
    for group in range(data.num_row_groups):
        n = data.metadata.row_group(group).num_rows
        if seen + n <= skip:
            seen += n
            continue
        table = data.read_row_group(group)
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        for i in range(n):
            if seen + i >= skip:
                row = {name: values[i] for name, values in columns.items() if name != "provenance"}
                yield row, list(columns["provenance"][i])
        seen += n


def _tfrecord_rows(path: str, skip: int) -> Iterator[tuple[dict, list[str]]]:
    from flanmix_corpus.tf_example import parse_example

    with _open(path) as handle:
        data = handle.read()
    pos, index = 0, 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise FlanmixError(f"shard {path}: truncated TFRecord frame at byte {pos}")
        length = int.from_bytes(data[pos:pos + 8], "little")
        record = data[pos + 12:pos + 12 + length]
        pos += 12 + length + 4
        if index >= skip:
            parsed = parse_example(record)
            provenance = [p.decode("utf-8") for p in parsed.pop("provenance", [])]
            yield parsed, provenance
        index += 1


def iter_rows(info: CorpusInfo, source: str = "parquet", start: int = 0) -> Iterator[tuple[int, str, int, dict, list[str]]]:
    """(corpus row, shard, row in shard, feature arrays, provenance) from row `start` on, shards in
    order; shards wholly before `start` are skipped by their manifest row counts, unread."""
    info.require_packed()
    if source not in SOURCES:
        raise FlanmixError(f"unknown row source {source!r}; use one of {', '.join(SOURCES)}")
    counts = {f["path"]: int(f["num_rows"]) for f in info.manifest["files"]}
    reader = _parquet_rows if source == "parquet" else _tfrecord_rows
    first = 0
    for path in info.files(source):
        relative = path[len(info.root.rstrip("/")) + 1:]
        n = counts[relative]
        if first + n > start:
            skip = max(0, start - first)
            for i, (arrays, provenance) in enumerate(reader(path, skip)):
                yield first + skip + i, relative, skip + i, arrays, provenance
        first += n


def _strip_eos(ids: list[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] == EOS_ID else ids


def row_segments(vocab: Vocabulary, row: int, file: str, row_in_file: int, arrays: dict,
                 provenance: list[str]) -> list[Segment]:
    """Every segment of one row, decoded (EOS removed before decoding, counted in the token counts)."""
    pieces = unpack_row(arrays)
    if len(pieces) != len(provenance):
        raise FlanmixError(f"{file} row {row_in_file}: {len(pieces)} segments but {len(provenance)} provenance entries")
    out = []
    for s, ((inputs, targets), prov) in enumerate(zip(pieces, provenance), start=1):
        dataset, template_id, setting, row_id = prov.split("|", 3)
        out.append(Segment(row, file, row_in_file, s, dataset, template_id, setting, row_id, len(inputs), len(targets),
                           vocab.decode(_strip_eos(inputs)), vocab.decode(_strip_eos(targets))))
    return out


def inspect_corpus(corpus_dir: str, row: int | None = None, dataset: str | None = None, n: int = 1,
                   source: str = "parquet", vocab_path: str | None = None) -> list[list[Segment]]:
    """The selected rows, each a list of its segments: `n` rows from `row` (default 0), or with
    `dataset` the rows holding its first `n` examples, keeping only that dataset's segments."""
    info = open_corpus(corpus_dir)
    info.require_packed()
    if dataset is not None and dataset not in info.manifest["datasets"]:
        raise FlanmixError(f"corpus {corpus_dir} has no dataset {dataset!r} (it has {len(info.manifest['datasets'])}; "
                           f"see manifest.json `datasets`)")
    total = int(info.manifest["num_rows"])
    start = row or 0
    if not 0 <= start < max(total, 1) or total == 0:
        raise FlanmixError(f"corpus {corpus_dir} has {total} rows; row {start} does not exist")
    vocab = corpus_vocabulary(info, vocab_path)
    out, found = [], 0
    for r, file, i, arrays, provenance in iter_rows(info, source, start):
        if dataset is None:
            out.append(row_segments(vocab, r, file, i, arrays, provenance))
            if len(out) >= n:
                break
            continue
        if not any(p.split("|", 1)[0] == dataset for p in provenance):
            continue
        keep = [s for s in row_segments(vocab, r, file, i, arrays, provenance) if s.dataset == dataset][:n - found]
        out.append(keep)
        found += len(keep)
        if found >= n:
            break
    return out


def format_rows(rows: list[list[Segment]], info: CorpusInfo) -> str:
    """What `flanmix inspect` prints: a header per row, then each segment's provenance and text."""
    lengths = info.sequence_length
    lines = []
    for segments in rows:
        if not segments:
            continue
        first = segments[0]
        lines.append(f"=== row {first.row} ({first.file}, row {first.row_in_file}): {len(segments)} segment(s) shown; "
                     f"layout {info.layout}, lengths {', '.join(f'{k} {v}' for k, v in lengths.items())}")
        for s in segments:
            lines.append(f"--- segment {s.segment} | dataset {s.dataset} | template {s.template_id} | "
                         f"{s.prompt_setting} | row {s.row_id} | {s.inputs_tokens} inputs + {s.targets_tokens} "
                         f"targets tokens (EOS included)")
            lines += ["[inputs]", s.inputs, "[targets]", s.targets]
        lines.append("")
    return "\n".join(lines)


def json_lines(rows: list[list[Segment]]) -> str:
    return "".join(json.dumps({**asdict(s), "id": s.key}, ensure_ascii=False, sort_keys=True) + "\n"
                   for segments in rows for s in segments)
