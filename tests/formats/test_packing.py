"""Packing invariants on literal fixtures and on random examples."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.formats.fit import fit_to_length
from pipelines.formats.rows import TokenizedExample, pack_examples, unpack_row


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


# --- the bin packer: streaming best-fit decreasing -------------------------------------------------

from pipelines.formats.fit import fit_decoder, fit_example  # noqa: E402
from pipelines.formats.packer import pack_bins  # noqa: E402
from pipelines.formats.rows import pack_batches, pack_decoder_examples  # noqa: E402


def pack_layout(examples, layout, inputs_length, targets_length, decoder_length=0):
    """`pack_batches`, row by row (a test helper)."""
    for batch in pack_batches(examples, layout, inputs_length, targets_length, decoder_length):
        yield from batch.rows()


def test_pack_bins_places_largest_first_into_the_tightest_row():
    # 6, 5, 4 open rows; 3 fits 5's row exactly (tightest), 2 fits 6's. Rows list arrival order.
    assert list(pack_bins([5, 2, 4, 3, 6], lambda n: (n,), (8,))) == [[2, 6], [5, 3], [4]]


def test_pack_bins_respects_every_budget_jointly():
    items = [(6, 1), (1, 6), (2, 2), (5, 5)]
    bins = list(pack_bins(items, lambda s: s, (8, 8)))
    for b in bins:
        assert sum(s[0] for s in b) <= 8 and sum(s[1] for s in b) <= 8
    assert sorted(map(tuple, sum(bins, []))) == sorted(items)
    assert len(bins) == 2  # (6,1)+(1,6) and (5,5)+(2,2)


def test_pack_bins_streams_with_bounded_memory():
    """Rows come out while the input is still being read; the packer never holds more than
    buffer_size examples plus max_open_rows rows."""
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 40, size=5000)
    consumed = []

    def stream():
        for i, s in enumerate(sizes):
            consumed.append(i)
            yield int(s)

    emitted, held_max = 0, 0
    for row in pack_bins(stream(), lambda n: (n,), (100,), buffer_size=200, max_open_rows=16):
        emitted += len(row)
        held_max = max(held_max, len(consumed) - emitted)
        assert len(consumed) < 5000 or emitted > 4000  # streaming: most rows leave before the end
    assert emitted == 5000
    assert held_max <= 200 + 16 * 100  # buffer + open rows (at most 100 one-token items each)


def _best_fit_decreasing(sizes: list[int], capacity: int) -> list[list[int]]:
    """The packer's rule for one budget, written the slow obvious way: largest first (arrival breaks
    ties), each into the open row with the least slack (room / capacity as a running float sum) among
    those it fits, the earliest row on a tie; rows in opening order, items in arrival order."""
    order = sorted(range(len(sizes)), key=lambda k: (-sizes[k], k))
    rooms, slacks, rows = [], [], []
    for k in order:
        fitting = [j for j in range(len(rooms)) if rooms[j] >= sizes[k]]
        if fitting:
            j = min(fitting, key=lambda j: (slacks[j], j))
        else:
            j = len(rooms)
            rooms.append(capacity)
            slacks.append(1.0)
            rows.append([])
        rooms[j] -= sizes[k]
        slacks[j] -= sizes[k] * (1.0 / capacity)
        rows[j].append(k)
    return [sorted(r) for r in rows]


@pytest.mark.parametrize("capacity", [8, 100, 2560])
def test_one_budget_rows_are_best_fit_decreasing_ties_included(capacity):
    """The single-budget path (bisect over the rows' room) makes exactly the obvious rule's choices,
    also when many rows have the same room (few distinct sizes)."""
    rng = np.random.default_rng(capacity)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        pool = rng.integers(1, capacity + 1, size=int(rng.integers(1, 6)))  # few sizes: many equal rooms
        sizes = [int(x) for x in (rng.choice(pool, n) if trial % 2 else rng.integers(1, capacity + 1, n))]
        got = list(pack_bins(list(range(n)), lambda k: (sizes[k],), (capacity,), buffer_size=n + 1, max_open_rows=n))
        assert got == _best_fit_decreasing(sizes, capacity)


def test_pack_bins_is_deterministic_and_refuses_oversize():
    rng = np.random.default_rng(2)
    items = [(int(a), int(b)) for a, b in zip(rng.integers(1, 300, 3000), rng.integers(1, 80, 3000))]
    first = list(pack_bins(items, lambda s: s, (512, 128), buffer_size=500))
    assert first == list(pack_bins(list(items), lambda s: s, (512, 128), buffer_size=500))
    with pytest.raises(ValueError, match="does not fit"):
        list(pack_bins([(600, 1)], lambda s: s, (512, 128)))


def test_decoder_worked_example_from_the_docstring():
    a = TokenizedExample(np.array([71, 9, 1], np.int32), np.array([5, 1], np.int32), "a")
    b = TokenizedExample(np.array([30, 22, 14, 1], np.int32), np.array([17, 1], np.int32), "b")
    (row,) = pack_decoder_examples([a, b], 12)
    assert row.arrays["targets"].tolist() == [71, 9, 1, 5, 1, 30, 22, 14, 1, 17, 1, 0]
    assert row.arrays["targets_segment_ids"].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0]
    assert row.arrays["targets_positions"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 0]
    assert row.arrays["loss_mask"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0]
    assert row.provenance == ("a", "b")
    assert unpack_row(row.arrays) == [([71, 9, 1], [5, 1]), ([30, 22, 14, 1], [17, 1])]


def test_decoder_invariants_on_random_examples():
    rng = np.random.default_rng(3)
    examples = [ex(int(rng.integers(2, 150)), int(rng.integers(2, 60)), f"e{i}") for i in range(500)]
    rows = list(pack_decoder_examples(examples, 256, buffer_size=100))
    seen = []
    for row in rows:
        a = row.arrays
        tokens, seg, pos, loss = a["targets"], a["targets_segment_ids"], a["targets_positions"], a["loss_mask"]
        assert all(v.shape == (256,) and v.dtype == np.int32 for v in a.values())
        assert (tokens[seg == 0] == 0).all() and (loss[seg == 0] == 0).all()
        first_pad = np.argmax(seg == 0) if (seg == 0).any() else 256
        assert (seg[first_pad:] == 0).all() and (np.diff(seg[:first_pad]) >= 0).all()
        for s in range(1, int(seg.max()) + 1):
            here = seg == s
            assert pos[here].tolist() == list(range(int(here.sum())))
            m = loss[here]
            n_in = int((m == 0).sum())
            assert m.tolist() == [0] * n_in + [1] * (len(m) - n_in)  # inputs, then targets with loss
            assert tokens[here][n_in - 1] == 1 and tokens[here][-1] == 1  # both parts end with EOS
        for (inputs, targets), prov in zip(unpack_row(a), row.provenance):
            e = examples[int(prov[1:])]
            assert inputs == e.inputs.tolist() and targets == e.targets.tolist()
        seen.extend(row.provenance)
    assert sorted(seen) == sorted(e.provenance for e in examples)


def test_decoder_rows_within_one_percent_of_the_lower_bound():
    rng = np.random.default_rng(5)
    n_in = np.round(rng.lognormal(np.log(200), 0.8, 4000)).astype(int) + 2
    n_tg = np.round(rng.lognormal(np.log(30), 1.0, 4000)).astype(int) + 2
    examples = [ex(int(min(a, 2000)), int(min(b, 500)), f"e{i}") for i, (a, b) in enumerate(zip(n_in, n_tg))]
    rows = list(pack_decoder_examples(examples, 2560))
    tokens = sum(len(e.inputs) + len(e.targets) for e in examples)
    assert len(rows) <= np.ceil(tokens / 2560) * 1.01


def test_decoder_example_over_budget_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        list(pack_decoder_examples([ex(10, 5, "big")], 12))


def test_encdec_rows_near_the_lower_bound_when_inputs_bind():
    """Flan-like lengths (inputs bind, targets have slack): rows within 1% of ceil(tokens / length)."""
    rng = np.random.default_rng(4)
    n_in = np.minimum(np.round(rng.lognormal(np.log(200), 0.8, 4000)).astype(int) + 2, 2048)
    n_tg = np.minimum(np.round(rng.lognormal(np.log(20), 0.9, 4000)).astype(int) + 2, 512)
    examples = [ex(int(a), int(b), f"e{i}") for i, (a, b) in enumerate(zip(n_in, n_tg))]
    rows = list(pack_examples(examples, 2048, 512))
    bound = max(np.ceil(n_in.sum() / 2048), np.ceil(n_tg.sum() / 512))
    assert len(rows) <= bound * 1.01


@pytest.mark.parametrize("n_in,n_tg,length,want_in,want_tg,cut", [
    (3, 2, 12, 4, 3, False),    # fits: both sides get EOS
    (9, 2, 12, 9, 3, True),     # inputs give way first...
    (20, 20, 12, 6, 6, True),   # ...but keep half the row when the targets are long too
    (2, 20, 12, 3, 9, True),    # short inputs stay whole; targets take the rest
])
def test_fit_decoder_cuts_inputs_first_then_targets(n_in, n_tg, length, want_in, want_tg, cut):
    inputs, targets, truncated = fit_decoder(list(range(5, 5 + n_in)), list(range(5, 5 + n_tg)), length)
    assert (len(inputs), len(targets), truncated) == (want_in, want_tg, cut)
    assert inputs[-1] == 1 and targets[-1] == 1 and len(inputs) + len(targets) <= length
    assert inputs[:-1].tolist() == list(range(5, 5 + want_in - 1))  # keeps the beginning


def test_fit_example_and_pack_layout_dispatch_on_layout():
    i, t, cut = fit_example([5] * 10, [6] * 10, "encdec", 8, 4)
    assert (len(i), len(t), cut) == (8, 4, True)
    i, t, cut = fit_example([5] * 10, [6] * 10, "decoder", 8, 4, decoder_length=30)
    assert (len(i), len(t), cut) == (11, 11, False)
    exs = [ex(3, 2, "a"), ex(4, 2, "b")]
    assert "loss_mask" in next(pack_layout(exs, "decoder", 8, 4, 12)).arrays
    assert "inputs" in next(pack_layout(exs, "encdec", 8, 4)).arrays
    with pytest.raises(ValueError, match="unknown layout"):
        list(pack_layout(exs, "prefix", 8, 4))


def test_batches_hold_the_same_rows_however_they_are_split():

    rng = np.random.default_rng(3)
    examples = [ex(int(rng.integers(2, 90)), int(rng.integers(2, 30)), f"e{i}") for i in range(300)]
    for layout, args in (("encdec", (128, 32, 0)), ("decoder", (0, 0, 128))):
        whole = list(pack_batches(examples, layout, *args, rows_per_batch=10_000))
        split = list(pack_batches(examples, layout, *args, rows_per_batch=7))
        assert len(whole) == 1 and len(split) == -(-len(whole[0]) // 7)
        rows = [r for b in split for r in b.rows()]
        assert [r.provenance for r in rows] == [r.provenance for r in whole[0].rows()]
        for name, matrix in whole[0].arrays.items():
            assert np.array_equal(np.stack([r.arrays[name] for r in rows]), matrix)
        # segment_tokens lists each segment's (inputs, targets) sizes in provenance order
        by_tag = {e.provenance: (len(e.inputs), len(e.targets)) for e in examples}
        flat = [p for r in rows for p in r.provenance]
        assert np.concatenate([b.segment_tokens for b in split]).tolist() == [list(by_tag[p]) for p in flat]
