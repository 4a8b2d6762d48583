"""Source split selectors as written in catalog entries (`train`, `train[:-200]`, `train[30200:60200]`,
`validation[10%:]`), resolved to an absolute row range so row ids stay the row's index in the whole
source split, whatever slice an entry takes.

    >>> parse_split("train[:-200]")
    SplitSlice(name='train', start='', stop='-200')
    >>> parse_split("train[:-200]").resolve(1000)
    (0, 800)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pipelines.errors import LoaderError

_SPLIT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[\s*(-?\d+%?)?\s*:\s*(-?\d+%?)?\s*\])?\s*$")


@dataclass(frozen=True)
class SplitSlice:
    name: str
    start: str = ""
    stop: str = ""

    @property
    def is_full(self) -> bool:
        return not self.start and not self.stop

    def resolve(self, num_rows: int) -> tuple[int, int]:
        """Absolute [start, stop) in a split of `num_rows` rows (Python slice semantics)."""
        def bound(text: str, default: int) -> int:
            if not text:
                return default
            if text.endswith("%"):
                return round(int(text[:-1]) * num_rows / 100)
            return int(text)

        start, stop, _ = slice(bound(self.start, 0), bound(self.stop, num_rows)).indices(num_rows)
        return start, max(start, stop)


def parse_split(selector: str) -> SplitSlice:
    match = _SPLIT.match(selector)
    if not match:
        raise LoaderError(f"split selector {selector!r} is not NAME or NAME[start:stop] (integers or percentages)")
    return SplitSlice(match.group(1), match.group(2) or "", match.group(3) or "")


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) cut into consecutive ranges of at most `size` rows (at least one range)."""
    if stop <= start:
        return [(start, start)]
    return [(lo, min(lo + size, stop)) for lo in range(start, stop, size)]
