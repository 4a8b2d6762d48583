"""Pack tokenized examples into fixed-length rows: streaming best-fit decreasing over a bounded buffer.

Two layouts (schemas/packed_encdec.features.json, schemas/packed_decoder.features.json).

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

The packer (`pack_bins`) reads examples into a buffer of `buffer_size`; when it is full it places the
buffered examples, largest first (by the sum of their budget fractions), each into the open row where
it fits every budget at once (inputs and targets for encdec, the one length for decoder) with the least
room left afterwards, opening a row when none fits. After each buffer, rows that no example seen so far
could enter are emitted, and if more than `max_open_rows` are still open the fullest are emitted. It
holds at most `buffer_size` buffered examples plus `max_open_rows` open rows, whatever the corpus
size. Within a row, segments keep arrival order; rows are emitted in the order they were opened. The
output is a pure function of the input order, which the Pack stage fixes with a keyed hash.

No example crosses a row: an example over the budget is refused here (`ValueError`); the Tokenize
stage applies the counted overlong policy first (`fit_to_length`, `fit_decoder`).
"""
from __future__ import annotations

import array
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

LAYOUT_ENCDEC = "encdec"
LAYOUT_DECODER = "decoder"
LAYOUTS = (LAYOUT_ENCDEC, LAYOUT_DECODER)

FEATURES = (
    "inputs", "inputs_segment_ids", "inputs_positions",
    "targets", "targets_segment_ids", "targets_positions",
)
DECODER_FEATURES = ("targets", "targets_segment_ids", "targets_positions", "loss_mask")
LAYOUT_FEATURES = {LAYOUT_ENCDEC: FEATURES, LAYOUT_DECODER: DECODER_FEATURES}

DEFAULT_BUFFER_SIZE = 10_000
DEFAULT_MAX_OPEN_ROWS = 1_024

T = TypeVar("T")


@dataclass(frozen=True)
class TokenizedExample:
    inputs: np.ndarray  # int32, ends with EOS
    targets: np.ndarray  # int32, ends with EOS
    provenance: str  # "dataset|template_id|row_id"


@dataclass(frozen=True)
class PackedRow:
    """Arrays of the packed layout plus one provenance string per segment."""

    arrays: dict  # feature name -> np.ndarray[int32]
    provenance: tuple[str, ...]


# --- the bin packer ------------------------------------------------------------------------------

def pack_bins(
    items: Iterable[T],
    size: Callable[[T], Sequence[int]],
    capacity: Sequence[int],
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    max_open_rows: int = DEFAULT_MAX_OPEN_ROWS,
) -> Iterator[list[T]]:
    """Group `items` into bins whose summed sizes stay within `capacity` in every dimension.

    >>> [b for b in pack_bins([5, 2, 4, 3, 6], lambda n: (n,), (8,))]
    [[2, 6], [5, 3], [4]]

    Each bin lists its items in arrival order. Deterministic: ties go to the earlier item / bin.
    """
    if buffer_size < 1 or max_open_rows < 0:
        raise ValueError(f"buffer_size must be >= 1 and max_open_rows >= 0 (got {buffer_size}, {max_open_rows})")
    cap = np.asarray(capacity, np.int64)
    dims = len(cap)
    weight = 1.0 / cap
    slots = max_open_rows + buffer_size  # open bins never exceed this
    residual = np.empty((dims, slots), np.int64)  # room left per budget; one contiguous array per budget
    slack = np.empty(slots, np.float64)  # normalized room left, the best-fit score
    born = np.empty(slots, np.int64)  # bin creation counter, the emission order
    contents: list[list[tuple[int, T]]] = []
    state = {"open": 0, "made": 0, "seen": 0}
    min_size = np.full(dims, np.iinfo(np.int64).max, np.int64)

    def place(buffer: list[tuple[int, T, tuple]]) -> None:
        sizes = np.array([s for _, _, s in buffer], np.int64).reshape(len(buffer), dims)
        bad = np.flatnonzero(((sizes > cap) | (sizes < 1)).any(axis=1))
        if len(bad):
            raise ValueError(f"item of size {sizes[bad[0]].tolist()} does not fit a row of {cap.tolist()}")
        np.minimum(min_size, sizes.min(axis=0), out=min_size)
        frac = sizes * weight
        # Largest first (total of the budget fractions, then the largest fraction); arrival breaks ties.
        total = frac.sum(axis=1)
        order = np.lexsort((np.arange(len(buffer)), -frac.max(axis=1), -total))
        total = total.tolist()
        size_lists = sizes.tolist()
        rooms = list(residual)  # per budget, a view of the room left in each open bin
        for k in order.tolist():
            s = size_lists[k]
            n = state["open"]
            j = n
            if n:
                fits = rooms[0][:n] >= s[0]
                for d in range(1, dims):
                    fits &= rooms[d][:n] >= s[d]
                score = np.where(fits, slack[:n], np.inf)
                best = int(score.argmin())
                if fits[best]:
                    j = best
            if j == n:  # fits no open row: open a new one
                residual[:, j] = cap
                slack[j] = float(dims)
                born[j] = state["made"]
                state["made"] += 1
                state["open"] += 1
                contents.append([])
            for d in range(dims):
                rooms[d][j] -= s[d]
            slack[j] -= total[k]
            contents[j].append(buffer[k][:2])

    def close(mask: np.ndarray) -> list[list[T]]:
        n = state["open"]
        keep = np.flatnonzero(~mask[:n])
        gone = np.flatnonzero(mask[:n])
        out = [[item for _, item in sorted(contents[j], key=lambda p: p[0])] for j in gone[np.argsort(born[gone])]]
        residual[:, : len(keep)] = residual[:, keep]
        slack[: len(keep)] = slack[keep]
        born[: len(keep)] = born[keep]
        contents[:] = [contents[j] for j in keep]
        state["open"] = len(keep)
        return out

    def settle() -> list[list[T]]:
        n = state["open"]
        dead = np.any(residual[:, :n] < min_size[:, None], axis=0)  # no example seen so far would fit
        closed = close(dead)
        n = state["open"]
        if n > max_open_rows:
            fullest = np.lexsort((born[:n], slack[:n]))[: n - max_open_rows]
            mask = np.zeros(n, bool)
            mask[fullest] = True
            closed += close(mask)  # dead rows first, then the fullest, each group by age
        return closed

    buffer: list[tuple[int, T, tuple]] = []
    for item in items:
        buffer.append((state["seen"], item, tuple(size(item))))  # checked per buffer, in `place`
        state["seen"] += 1
        if len(buffer) >= buffer_size:
            place(buffer)
            buffer = []
            yield from settle()
    if buffer:
        place(buffer)
    yield from close(np.ones(state["open"], bool))


# --- assembling rows ------------------------------------------------------------------------------

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


def _lay_out(groups: Sequence[Sequence[np.ndarray]], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, segment ids and positions matrices for rows made of `groups` of token arrays, each
    piece starting where the previous one ended, and the mask of the slots that hold a token.

    A row's pieces fill it from the start, so the filled slots of all rows, read row by row, are
    exactly the pieces concatenated: one masked assignment per matrix lays everything out."""
    pieces = [piece for group in groups for piece in group]
    sizes = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
    counts = np.fromiter((len(g) for g in groups), np.int64, len(groups))
    ends = np.cumsum(sizes)
    row_ends = ends[np.cumsum(counts) - 1] if len(pieces) else np.zeros(len(groups), np.int64)
    used = np.diff(row_ends, prepend=0) if len(pieces) else row_ends  # tokens in each row
    filled = np.arange(length) < used[:, None]
    tokens = np.zeros((len(groups), length), np.int32)
    segments = np.zeros_like(tokens)
    positions = np.zeros_like(tokens)
    if pieces:
        first = np.cumsum(counts) - counts  # index of each row's first piece
        segment = np.arange(len(pieces)) - np.repeat(first, counts) + 1
        tokens[filled] = np.concatenate(pieces)
        segments[filled] = np.repeat(segment.astype(np.int32), sizes)
        positions[filled] = np.arange(int(ends[-1]), dtype=np.int32) - np.repeat((ends - sizes).astype(np.int32), sizes)
    return tokens, segments, positions, filled


def assemble_batch(groups: Sequence[Sequence[TokenizedExample]], layout: str, inputs_length: int,
                   targets_length: int = 0, decoder_length: int = 0) -> PackedBatch:
    """The rows holding `groups` of examples (one group per row, segments in group order)."""
    provenance = tuple(tuple(ex.provenance for ex in group) for group in groups)
    examples = [ex for group in groups for ex in group]
    segment_tokens = np.array([(len(ex.inputs), len(ex.targets)) for ex in examples], np.int64).reshape(-1, 2)
    if layout == LAYOUT_ENCDEC:
        arrays = {}
        for side, length in (("inputs", inputs_length), ("targets", targets_length)):
            tokens, segments, positions, _ = _lay_out([[getattr(ex, side) for ex in g] for g in groups], length)
            arrays.update({side: tokens, f"{side}_segment_ids": segments, f"{side}_positions": positions})
    elif layout == LAYOUT_DECODER:
        tokens, segments, positions, filled = _lay_out(
            [[np.concatenate([ex.inputs, ex.targets]) for ex in g] for g in groups], decoder_length)
        loss = np.zeros_like(tokens)
        # a slot is a target when its position within its example is past the example's inputs
        loss[filled] = positions[filled] >= np.repeat(segment_tokens[:, 0], segment_tokens.sum(axis=1))
        arrays = {"targets": tokens, "targets_segment_ids": segments, "targets_positions": positions, "loss_mask": loss}
    else:
        raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
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
        raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
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


def pack_layout(
    examples: Iterable[TokenizedExample],
    layout: str,
    inputs_length: int,
    targets_length: int,
    decoder_length: int = 0,
    max_open_rows: int = DEFAULT_MAX_OPEN_ROWS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> Iterator[PackedRow]:
    """`pack_batches`, row by row."""
    for batch in pack_batches(examples, layout, inputs_length, targets_length, decoder_length, max_open_rows, buffer_size):
        yield from batch.rows()


# --- the overlong policy -------------------------------------------------------------------------

def fit_to_length(ids: Sequence[int], length: int, eos_id: int = 1) -> tuple[np.ndarray, bool]:
    """Append EOS, truncating to `length` (keep the beginning, end with EOS) like seqio's
    append_eos_after_trim. Returns (ids, was_truncated)."""
    truncated = len(ids) + 1 > length
    body = array.array("i", ids[: length - 1] if truncated else ids)  # from a list, 2x faster than numpy
    body.append(eos_id)
    return np.frombuffer(body, np.int32), truncated


def fit_decoder(input_ids: Sequence[int], target_ids: Sequence[int], length: int, eos_id: int = 1
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Append EOS to both sides so that together they fit `length` (the decoder row).

    When they do not fit, the inputs give way first (keep their beginning, end with EOS) but keep at
    least half the row, or all of themselves if shorter; the targets get the rest, cut the same way.

    >>> [a.tolist() for a in fit_decoder([5, 6, 7, 8, 9], [3, 4], 6)[:2]]
    [[5, 6, 1], [3, 4, 1]]
    >>> [a.tolist() for a in fit_decoder([5, 6], [3, 4, 8, 9, 10, 11], 6)[:2]]
    [[5, 6, 1], [3, 4, 1]]
    """
    if length < 2:
        raise ValueError(f"a decoder row needs room for two EOS tokens (length {length})")
    need_in, need_tg = len(input_ids) + 1, len(target_ids) + 1
    if need_in + need_tg <= length:
        keep_in, keep_tg = need_in, need_tg
    else:
        keep_in = max(length - need_tg, min(need_in, length // 2))
        keep_tg = length - keep_in
    inputs, cut_in = fit_to_length(input_ids, keep_in, eos_id)
    targets, cut_tg = fit_to_length(target_ids, keep_tg, eos_id)
    return inputs, targets, cut_in or cut_tg


def fit_example(
    input_ids: Sequence[int],
    target_ids: Sequence[int],
    layout: str,
    inputs_length: int,
    targets_length: int,
    decoder_length: int = 0,
    eos_id: int = 1,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Apply the layout's budget: per side for encdec (`fit_to_length`), combined for decoder (`fit_decoder`).
    Returns (inputs, targets, was_truncated)."""
    if layout == LAYOUT_DECODER:
        return fit_decoder(input_ids, target_ids, decoder_length, eos_id)
    inputs, cut_in = fit_to_length(input_ids, inputs_length, eos_id)
    targets, cut_tg = fit_to_length(target_ids, targets_length, eos_id)
    return inputs, targets, cut_in or cut_tg


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
