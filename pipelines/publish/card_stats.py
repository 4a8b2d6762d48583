"""Distributions the data card plots, counted while shards are written and kept in the manifest.

The manifest's totals (tokens per dataset, packing efficiency) cannot draw a length histogram or show
one shard packing worse than the others, so each written shard also counts, into the same merged
Report as everything else:

    ("hist_tokens", side, bin)   examples whose inputs / targets hold a number of tokens (EOS included,
                                 as packed) in LENGTH_EDGES[bin] <= n < LENGTH_EDGES[bin + 1]
    ("hist_fill", side, bin)     rows whose non-pad share of a sequence lies in FILL bin `bin` (5 % wide)
    ("shard_tokens", shard, side), ("shard_rows", shard)   per-shard packing efficiency

The bins are fixed, never derived from the corpus, so the histograms of two corpora compare bin for
bin: half-octave token bins (8, 12, 16, 24, ... 65536) and 20 fill bins of 5 % of the row length.
`distributions_section` turns the counters into the manifest's `distributions` block.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from pipelines import counters

# Token-count bin edges: 0, then 8, 12, 16, 24, 32, ... 49152, 65536 (2^k and 1.5 * 2^k); the last
# bin is open ([65536, inf)).
LENGTH_EDGES: tuple[int, ...] = (0,) + tuple(e for k in range(3, 16) for e in (2 ** k, 3 * 2 ** (k - 1))) + (65536,)
FILL_BINS = 20  # 5 % each; a full row lands in the last bin


def length_bins(lengths: np.ndarray) -> np.ndarray:
    """Bin index of every token count (see LENGTH_EDGES)."""
    return np.searchsorted(np.asarray(LENGTH_EDGES), np.asarray(lengths, np.int64), side="right") - 1


def fill_bins(nonpad: np.ndarray, length: int) -> np.ndarray:
    """Fill bin of every row holding `nonpad` tokens of `length` slots."""
    return np.minimum(np.asarray(nonpad, np.int64) * FILL_BINS // max(1, length), FILL_BINS - 1)


def _add_hist(counts: Counter, kind: str, side: str, bins: np.ndarray) -> None:
    for b, n in enumerate(np.bincount(bins).tolist()):
        if n:
            counts[(kind, side, b)] += n  # counters.HIST_TOKENS / HIST_FILL keys


def count_batch(counts: Counter, batch, plan, shard: int | None) -> None:
    """Add one PackedBatch's histograms (and, with its shard index, per-shard totals) to `counts`."""
    seg = batch.segment_tokens
    if len(seg):
        _add_hist(counts, counters.HIST_TOKENS.name, "inputs", length_bins(seg[:, 0]))
        _add_hist(counts, counters.HIST_TOKENS.name, "targets", length_bins(seg[:, 1]))
    a = batch.arrays
    if plan.layout == "decoder":
        sides = {"targets": (a["targets_segment_ids"], plan.decoder_length)}
    else:
        sides = {"inputs": (a["inputs_segment_ids"], plan.inputs_length),
                 "targets": (a["targets_segment_ids"], plan.targets_length)}
    for side, (segments, length) in sides.items():
        nonpad = np.count_nonzero(segments, axis=1)
        if len(nonpad):
            _add_hist(counts, counters.HIST_FILL.name, side, fill_bins(nonpad, length))
        if shard is not None:
            counts[counters.SHARD_TOKENS.key(shard, side)] += int(nonpad.sum())
    if shard is not None:
        counts[counters.SHARD_ROWS.key(shard)] += len(batch)


def _series(c: dict, kind: str, side: str, n: int) -> list[int]:
    return [int(c.get((kind, side, b), 0)) for b in range(n)]


def distributions_section(plan, c: dict) -> dict | None:
    """The manifest's `distributions`: fixed-bin histograms and per-shard packing (None for jsonl)."""
    if plan.output_format == "jsonl":
        return None
    if plan.layout == "decoder":
        lengths = {"targets": plan.decoder_length}
    else:
        lengths = {"inputs": plan.inputs_length, "targets": plan.targets_length}
    shards = []
    for shard in range(plan.num_shards):
        rows = int(c.get(("shard_rows", shard), 0))
        shards.append({
            "shard": shard,
            "rows": rows,
            "packing_efficiency": {side: round(c.get(("shard_tokens", shard, side), 0) / (rows * length), 6)
                                   if rows else 0.0 for side, length in lengths.items()},
        })
    return {
        "example_tokens": {
            "bin_edges": list(LENGTH_EDGES),
            **{side: _series(c, "hist_tokens", side, len(LENGTH_EDGES)) for side in ("inputs", "targets")},
        },
        "row_fill": {
            "bin_edges_percent": [100 * b // FILL_BINS for b in range(FILL_BINS + 1)],
            "row_length": lengths,
            **{side: _series(c, "hist_fill", side, FILL_BINS) for side in lengths},
        },
        "shards": shards,
    }
