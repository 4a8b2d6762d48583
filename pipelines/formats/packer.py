"""Streaming best-fit decreasing bin packing over a bounded buffer: which examples share a row.

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

import bisect
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

DEFAULT_BUFFER_SIZE = 10_000
DEFAULT_MAX_OPEN_ROWS = 1_024

T = TypeVar("T")


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
        if dims == 1:
            place_one_budget(buffer, sizes[:, 0].tolist(), total, order.tolist())
            return
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

    def place_one_budget(buffer: list, sizes: list[int], total: list[float], order: list[int]) -> None:
        """`place` for a single budget, with the same choices: the open row with the least slack among
        those with room, the earliest on a tie. With one budget the slack is the room over the
        capacity, so the rows that fit with the least slack are those with the least room that fits
        (a token of room is worth 1/capacity, far above the float error of the slack's running sums):
        a bisect over the distinct room values finds them, and only rows with exactly that room are
        compared by slack. Per item that is O(log rows) Python work instead of vector passes over
        every open row."""
        n = state["open"]
        room = residual[0, :n].tolist()
        slack_of = slack[:n].tolist()
        by_room: dict[int, list[int]] = {}
        for j, r in enumerate(room):  # rows in index order: each list stays sorted, earliest first
            by_room.setdefault(r, []).append(j)
        rooms_sorted = sorted(by_room)
        capacity = int(cap[0])
        for k in order:
            s = sizes[k]
            i = bisect.bisect_left(rooms_sorted, s)
            if i < len(rooms_sorted):
                r = rooms_sorted[i]
                rows = by_room[r]
                if len(rows) == 1:
                    j = rows.pop()
                else:
                    j = min(rows, key=lambda row: (slack_of[row], row))
                    rows.remove(j)
                if not rows:
                    del by_room[r]
                    del rooms_sorted[i]
            else:  # fits no open row: open a new one
                j = len(room)
                r = capacity
                room.append(capacity)
                slack_of.append(float(dims))
                born[j] = state["made"]
                state["made"] += 1
                contents.append([])
            left = r - s
            room[j] = left
            slack_of[j] -= total[k]
            rows = by_room.get(left)
            if rows is None:
                by_room[left] = [j]
                bisect.insort(rooms_sorted, left)
            else:
                bisect.insort(rows, j)
            contents[j].append(buffer[k][:2])
        n = state["open"] = len(room)
        residual[0, :n] = room
        slack[:n] = slack_of

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
