"""The row ledger: every row read is accounted for, or the build fails before anything is published.

A build must never lose a row silently (a shuffle that drops a batch, a stage that forgets one), so
once the merged Report is complete (`stages.finish.finish_corpus`) each dataset's counts must
balance, for every dataset that read rows or rendered examples:

    rendering:   read + upsampled copies  ==  rendered examples + dead letters (read, render) + sampled out
    writing:     rendered examples        ==  examples written + dead letters (tokenize)

(`read`: rows the loader produced, unparseable ones included; a row kept `n` times counts `n - 1`
upsampled copies; a field problem or a read error is one dead letter per row, a failing template
one per copy; `sampled out`: rows the mixture's rate kept no copy of; the overlong policy `drop`
makes tokenize dead letters.) A mismatch raises `LedgerMismatch`, naming the dataset and both
sides, and the staged files stay unpublished.

    >>> check({("read", "a"): 3, ("rendered_examples", "a"): 2, ("sampled_out", "a"): 1, ("examples", "a"): 2})
    >>> check({("read", "a"): 3, ("rendered_examples", "a"): 1, ("examples", "a"): 1})
    Traceback (most recent call last):
    pipelines.stages.ledger.LedgerMismatch: row ledger does not balance (rows were lost or counted twice; nothing was published): dataset a: read 3 + upsampled 0 != rendered 1 + dead letters 0 (read/render) + sampled out 0
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping

from pipelines import counters
from pipelines.errors import FlanmixError

RENDER_STAGES = ("read", "render")


class LedgerMismatch(FlanmixError):
    """The counts of a dataset do not add up: rows were lost (or counted twice) between stages."""


def balance(counts: Mapping[tuple, int]) -> dict[str, dict[str, int]]:
    """dataset -> the ledger's terms (read, upsampled, rendered, dead_render, sampled_out, written,
    dead_after), for every dataset that read a row or rendered an example."""
    terms: dict[str, Counter] = {}
    for key, n in counts.items():
        name = key[0]
        if name == counters.READ.name:
            term = "read"
        elif name == counters.UPSAMPLED_COPIES.name:
            term = "upsampled"
        elif name == counters.RENDERED_EXAMPLES.name:
            term = "rendered"
        elif name == counters.SAMPLED_OUT.name:
            term = "sampled_out"
        elif name == counters.EXAMPLES.name:
            term = "written"
        elif name == counters.DEAD_LETTERS.name:
            term = "dead_render" if key[2] in RENDER_STAGES else "dead_after"
        else:
            continue
        terms.setdefault(key[1], Counter())[term] += n
    return {d: dict(t) for d, t in sorted(terms.items()) if t.get("read") or t.get("rendered")}


def problems(counts: Mapping[tuple, int]) -> list[str]:
    """One line per dataset whose ledger does not balance."""
    out = []
    for dataset, t in balance(counts).items():
        g = lambda name: t.get(name, 0)  # noqa: E731
        if g("read") + g("upsampled") != g("rendered") + g("dead_render") + g("sampled_out"):
            out.append(f"dataset {dataset}: read {g('read')} + upsampled {g('upsampled')} != rendered {g('rendered')}"
                       f" + dead letters {g('dead_render')} (read/render) + sampled out {g('sampled_out')}")
        elif g("rendered") != g("written") + g("dead_after"):
            out.append(f"dataset {dataset}: rendered {g('rendered')} != written {g('written')}"
                       f" + dead letters {g('dead_after')} (tokenize)")
    return out


def check(counts: Mapping[tuple, int]) -> None:
    """Raise LedgerMismatch naming every dataset whose counts do not balance."""
    found = problems(counts)
    if found:
        raise LedgerMismatch("row ledger does not balance (rows were lost or counted twice; nothing was published): "
                             + "; ".join(found))
