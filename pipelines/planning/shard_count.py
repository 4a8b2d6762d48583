"""How many output shards a build gets: one per 64 MiB of its expected OUTPUT, measured in source
bytes (a shard is one worker task: its files and its packing time grow with the examples in it).

An output shard holds what the sampling puts in it: a task upsampled 20x puts 20 copies of each row
in the corpus, a `--target_tokens` larger than one epoch more than the source holds. Counting the
source (the old rule) let such shards grow without bound; counting the expected output keeps each
near `SOURCE_BYTES_PER_OUTPUT_SHARD` of source-equivalent examples:

    expected = sum over tasks of  source bytes x expected copies per row (sampling rate)
    with a token target:          target tokens x SOURCE_BYTES_PER_TOKEN

The rates are the survey's rule (`mixtures.resolve_weights`, `sampling_rate`) applied to the rows
the launcher knows without reading: the loaders' own counts where their metadata has them (Arrow,
Parquet: `SourceShard.args["_rows"]`), else the source bytes / the row size of the first 64 KiB
of a line-per-row file (TSV, JSONL, CSV), else / `ESTIMATED_BYTES_PER_ROW`. An
examples-proportional mixture at its default target has rate <= 1 whatever the estimate, so it gets
what the old rule gave it or fewer shards (capped tasks); the demo gets 1 as before. The count is a
function of the plan's inputs only, never of workers, so a plan's bytes are the same on any runner.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

from pipelines.definitions.catalog import Catalog
from pipelines.definitions.mixtures import Mixture, default_target, resolve_weights, sampling_rate
from pipelines.loaders.base import SourceShard

# One output shard per 64 MiB of (expected) source-equivalent output: ~60k Flan-like examples, a
# ~100 MB TFRecord shard and one worker task's packing and writing (which streams, so the worker's
# memory does not grow with the shard: stages/write.py).
SOURCE_BYTES_PER_OUTPUT_SHARD = 64 * 1024 * 1024
# Source bytes per source row where a loader cannot count rows without reading (a Flan-like row).
ESTIMATED_BYTES_PER_ROW = 1024
# Source bytes per output token (inputs + targets), for a token target: measured on the demo
# (1.0 MiB of shipped samples -> 2,673 examples, 600,916 tokens: 1.7 bytes a token, rounded up to 2
# so that a token target errs towards smaller shards).
SOURCE_BYTES_PER_TOKEN = 2


LINE_LOADERS = ("cot_tsv", "jsonl", "csv")  # one row a line: the head of a file tells the row size
HEAD_BYTES = 64 * 1024


def head_bytes_per_row(shard: SourceShard) -> float | None:
    """Bytes per row of a line-per-row source, from the first 64 KiB of its first file (one small
    read per dataset on the launcher); None when unknown (not such a loader, unreadable, no newline)."""
    path = shard.args.get("path")
    if shard.loader_type not in LINE_LOADERS or not isinstance(path, str) or any(c in path for c in "*?["):
        return None
    try:
        from pipelines.loaders import files

        with files.open_binary(path) as handle:
            head = handle.read(HEAD_BYTES)
    except Exception:  # noqa: BLE001 - an estimate: the fixed row size stands in
        return None
    lines = head.count(b"\n")
    if not lines or path.endswith((".gz", ".bz2", ".zst", ".xz")):
        return None
    return len(head) / lines if len(head) < HEAD_BYTES else head.rfind(b"\n") / lines


def planned_rows(sources: Iterable[SourceShard]) -> list[int]:
    """The rows each shard adds to its dataset's estimate, in order: the loader's count
    (`args["_rows"]`), else its bytes / the row size of the dataset's first file's head, else bytes
    / ESTIMATED_BYTES_PER_ROW. Per shard so that a source snapshot can record it and a build from the
    snapshot (whose files are Parquet, not the source's format) plans exactly as from the source."""
    out: list[int] = []
    per_row: dict[str, float] = {}
    for s in sources:
        known = s.args.get("_rows")
        if known is not None:
            out.append(int(known))
            continue
        if s.dataset not in per_row:
            per_row[s.dataset] = head_bytes_per_row(s) or ESTIMATED_BYTES_PER_ROW
        out.append(math.ceil(s.size_bytes / per_row[s.dataset] - 1e-6))
    return out


def estimated_rows(sources: Iterable[SourceShard]) -> dict[str, tuple[int, int]]:
    """dataset -> (rows, source bytes) as the launcher knows them without reading rows (`planned_rows`)."""
    sources = list(sources)
    rows: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for s, n in zip(sources, planned_rows(sources)):
        rows[s.dataset] += n
        size[s.dataset] += s.size_bytes
    return {d: (rows[d], size[d]) for d in rows}


def expected_output_bytes(mixture: Mixture, catalog: Catalog, sources: Iterable[SourceShard], available: set[str],
                          target_examples: int | None, target_tokens: int | None, upsample: bool) -> float:
    """The expected output of a build in source-equivalent bytes (see the module docstring)."""
    if target_tokens:
        return float(target_tokens) * SOURCE_BYTES_PER_TOKEN
    known = estimated_rows(sources)
    counts = {d: n for d, (n, _) in known.items() if d in available}
    weights = resolve_weights(mixture, catalog, counts, available)
    target = target_examples or default_target(weights, counts)
    total = 0.0
    for w in weights:
        rows, size = known.get(w.task, (0, 0))
        total += size * sampling_rate(w.weight, rows, target, upsample)
    return total


def output_shards(mixture: Mixture, catalog: Catalog, sources: Iterable[SourceShard], available: set[str],
                  target_examples: int | None, target_tokens: int | None, upsample: bool) -> int:
    """max(1, ceil(expected output / 64 MiB)); the source's own size when the weights cannot be
    resolved (a mixture without weights left, which make_plan reports itself)."""
    sources = list(sources)
    try:
        expected = expected_output_bytes(mixture, catalog, sources, available, target_examples, target_tokens, upsample)
    except (KeyError, ValueError, ZeroDivisionError):
        expected = sum(s.size_bytes for s in sources)
    return max(1, math.ceil(expected / SOURCE_BYTES_PER_OUTPUT_SHARD))


def dead_letter_shards(sources: Iterable[SourceShard]) -> int:
    """One dead-letter shard per 64 MiB of source: every row of a source may become a dead letter
    (with its raw text), so the series is sized by what could be lost, not by the output."""
    return max(1, math.ceil(sum(s.size_bytes for s in sources) / SOURCE_BYTES_PER_OUTPUT_SHARD))
