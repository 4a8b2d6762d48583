"""Packing invariants on literal fixtures and on random examples."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.packing import TokenizedExample, fit_to_length, pack_examples, unpack_row


def ex(n_in: int, n_tg: int, tag: str, start: int = 10) -> TokenizedExample:
    inputs = np.arange(start, start + n_in - 1, dtype=np.int32).tolist() + [1]
    targets = np.arange(start, start + n_tg - 1, dtype=np.int32).tolist() + [1]
    return TokenizedExample(np.asarray(inputs, np.int32), np.asarray(targets, np.int32), tag)


def test_worked_example_from_the_docstring():
    a = TokenizedExample(np.array([71, 9, 1], np.int32), np.array([5, 1], np.int32), "a")
    b = TokenizedExample(np.array([30, 22, 14, 1], np.int32), np.array([17, 1], np.int32), "b")
    (row,) = pack_examples([a, b], 8, 4)
    assert row.arrays["inputs"].tolist() == [71, 9, 1, 30, 22, 14, 1, 0]
    assert row.arrays["inputs_segment_ids"].tolist() == [1, 1, 1, 2, 2, 2, 2, 0]
    assert row.arrays["inputs_positions"].tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    assert row.arrays["targets"].tolist() == [5, 1, 17, 1]
    assert row.arrays["targets_segment_ids"].tolist() == [1, 1, 2, 2]
    assert row.arrays["targets_positions"].tolist() == [0, 1, 0, 1]
    assert row.provenance == ("a", "b")


def test_invariants_on_random_examples():
    rng = np.random.default_rng(0)
    examples = [ex(int(rng.integers(2, 200)), int(rng.integers(2, 60)), f"e{i}") for i in range(500)]
    rows = list(pack_examples(examples, 256, 64))
    seen = []
    for row in rows:
        a = row.arrays
        for side, length in (("inputs", 256), ("targets", 64)):
            tokens, seg, pos = a[side], a[f"{side}_segment_ids"], a[f"{side}_positions"]
            assert tokens.shape == seg.shape == pos.shape == (length,)
            assert tokens.dtype == np.int32
            assert (tokens[seg == 0] == 0).all() and (pos[seg == 0] == 0).all()  # pad is 0
            assert (tokens[seg > 0] != 0).all()
            nz = seg[seg > 0]
            assert (np.diff(nz) >= 0).all()  # segments are contiguous and increasing
            if len(nz):
                assert np.array_equal(np.unique(nz), np.arange(1, nz.max() + 1))
            for s in np.unique(nz):
                assert pos[seg == s].tolist() == list(range(int((seg == s).sum())))  # positions restart
                assert tokens[seg == s][-1] == 1  # each segment ends with EOS
            # padding only at the end: no segment after a pad slot
            first_pad = np.argmax(seg == 0) if (seg == 0).any() else length
            assert (seg[first_pad:] == 0).all()
        assert a["inputs_segment_ids"].max() == a["targets_segment_ids"].max() == len(row.provenance)
        seen.extend(row.provenance)
        for (inputs, targets), prov in zip(unpack_row(a), row.provenance):
            i = int(prov[1:])
            assert inputs == examples[i].inputs.tolist() and targets == examples[i].targets.tolist()
    assert sorted(seen) == sorted(e.provenance for e in examples)


def test_example_over_budget_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        list(pack_examples([ex(10, 5, "big")], 8, 8))


@pytest.mark.parametrize("ids,length,want,cut", [
    ([5, 6, 7], 8, [5, 6, 7, 1], False),
    ([5, 6, 7], 4, [5, 6, 7, 1], False),
    ([5, 6, 7, 8], 4, [5, 6, 7, 1], True),
    ([], 4, [1], False),
])
def test_fit_to_length_keeps_the_beginning_and_ends_with_eos(ids, length, want, cut):
    got, truncated = fit_to_length(ids, length)
    assert got.tolist() == want and truncated is cut
