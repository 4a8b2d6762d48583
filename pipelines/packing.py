"""Pack tokenized examples into fixed-length encoder-decoder rows (the layout of schemas/packed_encdec).

Worked example, lengths inputs=8 / targets=4, examples A=(in [71, 9, 1], tg [5, 1]) and
B=(in [30, 22, 14, 1], tg [17, 1]):

    inputs              71  9  1 30 22 14  1  0      targets              5  1 17  1
    inputs_segment_ids   1  1  1  2  2  2  2  0      targets_segment_ids  1  1  2  2
    inputs_positions     0  1  2  0  1  2  3  0      targets_positions    0  1  0  1

An example goes into the first open row where both its inputs and its targets fit; when none fits
and `max_open_rows` rows are open, the fullest row is closed. The order of the input decides the
output, so callers pass examples in a deterministic order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

FEATURES = (
    "inputs", "inputs_segment_ids", "inputs_positions",
    "targets", "targets_segment_ids", "targets_positions",
)


@dataclass(frozen=True)
class TokenizedExample:
    inputs: np.ndarray  # int32, ends with EOS
    targets: np.ndarray  # int32, ends with EOS
    provenance: str  # "dataset|template_id|row_id"


@dataclass
class _OpenRow:
    examples: list = field(default_factory=list)
    inputs_used: int = 0
    targets_used: int = 0


@dataclass(frozen=True)
class PackedRow:
    """Arrays of the packed layout plus one provenance string per segment."""

    arrays: dict  # feature name -> np.ndarray[int32]
    provenance: tuple[str, ...]


def _materialize(row: _OpenRow, inputs_length: int, targets_length: int) -> PackedRow:
    arrays = {}
    for side, length in (("inputs", inputs_length), ("targets", targets_length)):
        tokens = np.zeros(length, np.int32)
        segments = np.zeros(length, np.int32)
        positions = np.zeros(length, np.int32)
        offset = 0
        for seg, ex in enumerate(row.examples, start=1):
            ids = getattr(ex, side)
            n = len(ids)
            tokens[offset:offset + n] = ids
            segments[offset:offset + n] = seg
            positions[offset:offset + n] = np.arange(n, dtype=np.int32)
            offset += n
        arrays[side] = tokens
        arrays[f"{side}_segment_ids"] = segments
        arrays[f"{side}_positions"] = positions
    return PackedRow(arrays, tuple(ex.provenance for ex in row.examples))


def pack_examples(
    examples: Iterable[TokenizedExample],
    inputs_length: int,
    targets_length: int,
    max_open_rows: int = 8,
) -> Iterator[PackedRow]:
    """Yield packed rows; every example must already fit its budget (see `fit_to_length`)."""
    open_rows: list[_OpenRow] = []
    for ex in examples:
        n_in, n_tg = len(ex.inputs), len(ex.targets)
        if n_in > inputs_length or n_tg > targets_length:
            raise ValueError(f"{ex.provenance}: example of {n_in}/{n_tg} tokens exceeds {inputs_length}/{targets_length}")
        for row in open_rows:
            if row.inputs_used + n_in <= inputs_length and row.targets_used + n_tg <= targets_length:
                break
        else:
            if len(open_rows) >= max_open_rows:
                fullest = max(
                    range(len(open_rows)),
                    key=lambda i: open_rows[i].inputs_used / inputs_length + open_rows[i].targets_used / targets_length,
                )
                yield _materialize(open_rows.pop(fullest), inputs_length, targets_length)
            row = _OpenRow()
            open_rows.append(row)
        row.examples.append(ex)
        row.inputs_used += n_in
        row.targets_used += n_tg
    for row in open_rows:
        yield _materialize(row, inputs_length, targets_length)


def fit_to_length(ids: Sequence[int], length: int, eos_id: int = 1) -> tuple[np.ndarray, bool]:
    """Append EOS, truncating to `length` (keep the beginning, end with EOS) like seqio's
    append_eos_after_trim. Returns (ids, was_truncated)."""
    truncated = len(ids) + 1 > length
    body = list(ids[: length - 1]) if truncated else list(ids)
    body.append(eos_id)
    return np.asarray(body, np.int32), truncated


def unpack_row(arrays: dict) -> list[tuple[list[int], list[int]]]:
    """Inverse of packing for one row: the (inputs, targets) ids of each segment, in order."""
    out = []
    in_seg = np.asarray(arrays["inputs_segment_ids"])
    tg_seg = np.asarray(arrays["targets_segment_ids"])
    for seg in range(1, int(max(in_seg.max(initial=0), tg_seg.max(initial=0))) + 1):
        inputs = np.asarray(arrays["inputs"])[in_seg == seg].tolist()
        targets = np.asarray(arrays["targets"])[tg_seg == seg].tolist()
        out.append((inputs, targets))
    return out
