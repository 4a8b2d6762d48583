"""Packed rows: tokenized examples laid out as fixed-length rows of a layout, as column matrices.

Which examples share a row is `formats.packer.pack_bins`; cutting an example to its budget first is
`formats.fit`. Two layouts (schemas/packed_encdec.features.json, schemas/packed_decoder.features.json).

encdec, lengths inputs=8 / targets=4, examples A=(in [71, 9, 1], tg [5, 1]) and
B=(in [30, 22, 14, 1], tg [17, 1]):

    inputs              71  9  1 30 22 14  1  0      targets              5  1 17  1
    inputs_segment_ids   1  1  1  2  2  2  2  0      targets_segment_ids  1  1  2  2
    inputs_positions     0  1  2  0  1  2  3  0      targets_positions    0  1  0  1

decoder, length 12, the same examples (each example's inputs then its targets; loss on targets only):

    targets              71  9  1  5  1 30 22 14  1 17  1  0
    targets_segment_ids   1  1  1  1  1  2  2  2  2  2  2  0
    targets_positions     0  1  2  3  4  0  1  2  3  4  5  0
    loss_mask             0  0  0  1  1  0  0  0  0  1  1  0
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from flanmix_corpus.layouts import LAYOUT_DECODER, LAYOUT_ENCDEC, LAYOUTS
from pipelines.formats.packer import DEFAULT_BUFFER_SIZE, DEFAULT_MAX_OPEN_ROWS, pack_bins


@dataclass(frozen=True)
class TokenizedExample:
    inputs: np.ndarray  # int32, ends with EOS
    targets: np.ndarray  # int32, ends with EOS
    provenance: str  # "dataset|template_id|prompt_setting|key" (records.provenance)


@dataclass(frozen=True)
class PackedRow:
    """Arrays of the packed layout plus one provenance string per segment."""

    arrays: dict  # feature name -> np.ndarray[int32]
    provenance: tuple[str, ...]


@dataclass(frozen=True)
class PackedBatch:
    """Many packed rows of one layout as columns: each feature a (rows, length) int32 matrix.

    The build packs and writes a shard as one batch so the rows are laid out, encoded for TFRecord
    and handed to Arrow with whole-array operations instead of per-row ones. `segment_tokens` holds
    the (inputs, targets) token count of every segment in row order, the same order as the
    flattened provenance."""

    layout: str
    arrays: dict  # feature name -> np.ndarray[int32] of shape (rows, length)
    provenance: tuple[tuple[str, ...], ...]
    segment_tokens: np.ndarray  # int64 (segments, 2)

    def __len__(self) -> int:
        return len(self.provenance)

    def rows(self) -> Iterator[PackedRow]:
        for r, provenance in enumerate(self.provenance):
            yield PackedRow({name: a[r] for name, a in self.arrays.items()}, provenance)


def _lay_out(flat: np.ndarray, sizes: np.ndarray, counts: np.ndarray, length: int,
             past: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Tokens, segment ids and positions matrices for rows of pieces (and, given `past`, the matrix
    of slots whose position within their piece is at least that piece's `past`: the decoder's loss
    mask). `flat` is every piece's tokens concatenated in row order, `sizes` each piece's length and
    `counts` each row's number of pieces.

    A row's pieces fill it from the start, so each matrix is its values for all the pieces
    concatenated, computed once as flat arrays, then copied row by row into the zero padding: one
    slice copy per row, cheaper than masked assignments over every slot of the batch."""
    rows = len(counts)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    first = np.cumsum(counts) - counts  # index of each row's first piece
    row_ends = ends[np.cumsum(counts) - 1] if len(sizes) else np.zeros(rows, np.int64)
    row_starts = row_ends - np.diff(row_ends, prepend=0)  # where each row's tokens begin in `flat`
    segment = (np.arange(len(sizes)) - np.repeat(first, counts) + 1).astype(np.int32)
    position = np.arange(int(ends[-1]) if len(sizes) else 0, dtype=np.int32) - np.repeat(starts.astype(np.int32), sizes)
    flats = [flat, np.repeat(segment, sizes), position]
    if past is not None:
        flats.append((position >= np.repeat(past.astype(np.int32), sizes)).astype(np.int32))
    out = [np.zeros((rows, length), np.int32) for _ in flats]
    bounds = list(zip(range(rows), row_starts.tolist(), row_ends.tolist()))
    for matrix, values in zip(out, flats):
        for r, lo, hi in bounds:
            matrix[r, : hi - lo] = values[lo:hi]
    return tuple(out)


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int32, copy=False) if arrays else np.zeros(0, np.int32)


def assemble_batch(groups: Sequence[Sequence[TokenizedExample]], layout: str, inputs_length: int,
                   targets_length: int = 0, decoder_length: int = 0) -> PackedBatch:
    """The rows holding `groups` of examples (one group per row, segments in group order).

    Whole-batch operations only: each side's tokens are concatenated once for all rows (a decoder
    row's example is its inputs then its targets, so the pieces interleave)."""
    provenance = tuple(tuple(ex.provenance for ex in group) for group in groups)
    examples = [ex for group in groups for ex in group]
    counts = np.fromiter(map(len, groups), np.int64, len(groups))
    n_in = np.fromiter((len(ex.inputs) for ex in examples), np.int64, len(examples))
    n_tg = np.fromiter((len(ex.targets) for ex in examples), np.int64, len(examples))
    segment_tokens = np.stack([n_in, n_tg], axis=1)
    if layout == LAYOUT_ENCDEC:
        arrays = {}
        for side, length, sizes in (("inputs", inputs_length, n_in), ("targets", targets_length, n_tg)):
            flat = _concat([getattr(ex, side) for ex in examples])
            tokens, segments, positions = _lay_out(flat, sizes, counts, length)
            arrays.update({side: tokens, f"{side}_segment_ids": segments, f"{side}_positions": positions})
    elif layout == LAYOUT_DECODER:
        flat = _concat([piece for ex in examples for piece in (ex.inputs, ex.targets)])
        # a slot is a target when its position within its example is past the example's inputs
        tokens, segments, positions, loss = _lay_out(flat, n_in + n_tg, counts, decoder_length, past=n_in)
        arrays = {"targets": tokens, "targets_segment_ids": segments, "targets_positions": positions, "loss_mask": loss}
    else:
        raise ValueError(f"unknown layout {layout!r}; use one of {tuple(LAYOUTS)}")
    return PackedBatch(layout, arrays, provenance, segment_tokens)


ROWS_PER_BATCH = 1024


def pack_batches(
    examples: Iterable[TokenizedExample],
    layout: str,
    inputs_length: int,
    targets_length: int,
    decoder_length: int = 0,
    max_open_rows: int = DEFAULT_MAX_OPEN_ROWS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    rows_per_batch: int = ROWS_PER_BATCH,
) -> Iterator[PackedBatch]:
    """Pack `examples` (each already within its budget, see `fit_example`) into rows of `layout`,
    yielded as batches of up to `rows_per_batch` rows in emission order."""
    if layout == LAYOUT_ENCDEC:
        def size(ex: TokenizedExample) -> tuple[int, int]:
            n_in, n_tg = len(ex.inputs), len(ex.targets)
            if n_in > inputs_length or n_tg > targets_length:
                raise ValueError(f"{ex.provenance}: example of {n_in}/{n_tg} tokens exceeds {inputs_length}/{targets_length}")
            return n_in, n_tg
        capacity: tuple[int, ...] = (inputs_length, targets_length)
    elif layout == LAYOUT_DECODER:
        def size(ex: TokenizedExample) -> tuple[int, int]:
            n = len(ex.inputs) + len(ex.targets)
            if n > decoder_length:
                raise ValueError(f"{ex.provenance}: example of {len(ex.inputs)}+{len(ex.targets)} tokens exceeds {decoder_length}")
            return (n,)
        capacity = (decoder_length,)
    else:
        raise ValueError(f"unknown layout {layout!r}; use one of {tuple(LAYOUTS)}")
    groups: list[list[TokenizedExample]] = []
    for group in pack_bins(examples, size, capacity, buffer_size, max_open_rows):
        groups.append(group)
        if len(groups) >= rows_per_batch:
            yield assemble_batch(groups, layout, inputs_length, targets_length, decoder_length)
            groups = []
    if groups:
        yield assemble_batch(groups, layout, inputs_length, targets_length, decoder_length)


def pack_examples(
    examples: Iterable[TokenizedExample],
    inputs_length: int,
    targets_length: int,
    max_open_rows: int = DEFAULT_MAX_OPEN_ROWS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> Iterator[PackedRow]:
    """Yield encoder-decoder rows; every example must already fit its budget (see `fit_to_length`)."""
    for batch in pack_batches(examples, LAYOUT_ENCDEC, inputs_length, targets_length, 0, max_open_rows, buffer_size):
        yield from batch.rows()


def pack_decoder_examples(
    examples: Iterable[TokenizedExample],
    length: int,
    max_open_rows: int = DEFAULT_MAX_OPEN_ROWS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> Iterator[PackedRow]:
    """Yield decoder-only rows of `length`: each example is its inputs then its targets (see `fit_decoder`)."""
    for batch in pack_batches(examples, LAYOUT_DECODER, 0, 0, length, max_open_rows, buffer_size):
        yield from batch.rows()


# --- reading rows back ---------------------------------------------------------------------------

def unpack_row(arrays: dict) -> list[tuple[list[int], list[int]]]:
    """Inverse of packing for one row of either layout: the (inputs, targets) ids of each segment."""
    out = []
    if "loss_mask" in arrays:  # decoder layout
        tokens = np.asarray(arrays["targets"])
        seg = np.asarray(arrays["targets_segment_ids"])
        loss = np.asarray(arrays["loss_mask"])
        for s in range(1, int(seg.max(initial=0)) + 1):
            here = seg == s
            out.append((tokens[here & (loss == 0)].tolist(), tokens[here & (loss == 1)].tolist()))
        return out
    in_seg = np.asarray(arrays["inputs_segment_ids"])
    tg_seg = np.asarray(arrays["targets_segment_ids"])
    for seg in range(1, int(max(in_seg.max(initial=0), tg_seg.max(initial=0))) + 1):
        inputs = np.asarray(arrays["inputs"])[in_seg == seg].tolist()
        targets = np.asarray(arrays["targets"])[tg_seg == seg].tolist()
        out.append((inputs, targets))
    return out
