from __future__ import annotations

import pytest

from pipelines.errors import LoaderError
from pipelines.loaders.splits import chunks, parse_split


@pytest.mark.parametrize("selector, rows, expected", [
    ("train", 1000, ("train", 0, 1000)),
    ("train[:-200]", 1000, ("train", 0, 800)),
    ("train[-200:]", 1000, ("train", 800, 1000)),
    ("train[30200:60200]", 100_000, ("train", 30200, 60200)),
    ("validation[10%:]", 50, ("validation", 5, 50)),
    ("train[:-600]", 100, ("train", 0, 0)),
])
def test_split_selectors_resolve_to_absolute_ranges(selector, rows, expected):
    sel = parse_split(selector)
    assert (sel.name, *sel.resolve(rows)) == expected


def test_bad_selector():
    with pytest.raises(LoaderError, match="NAME\\[start:stop\\]"):
        parse_split("train[a:b]")


def test_chunks():
    assert chunks(0, 5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunks(3, 3, 2) == [(3, 3)]
