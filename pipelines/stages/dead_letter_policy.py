"""When dead letters fail a build: `--max_dead_letter_fraction F`.

A dataset's dead-letter fraction is dead letters / (examples written + dead letters), the share of
what the build tried to emit for it that was lost (upsampled copies count as tries, so it stays in
[0, 1]). The build fails, before anything is published, when

- without F (the default): some dataset lost everything, i.e. it has dead letters and no example
  (a template that fails on every row used to publish an empty corpus with exit 0);
- with F: some dataset's fraction, or the whole build's, is above F (`0` tolerates no dead letter,
  `1` never fails).

It runs where the merged report is complete (`transforms.finish_corpus`), so the staged files are
left unpublished and the previous corpus at the output, if any, stays as it was.

    >>> check({("examples", "a"): 3, ("dead_letter", "a", "render"): 1}, 0.2)
    Traceback (most recent call last):
    pipelines.stages.dead_letter_policy.DeadLetterLimit: dead letters over --max_dead_letter_fraction 0.2: dataset a lost 1 of 4 (0.250); nothing was published
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Mapping

from pipelines.errors import FlanmixError


class DeadLetterLimit(FlanmixError):
    """Too many rows of a dataset (or of the build) became dead letters."""


def validate(fraction: float | None) -> float | None:
    if fraction is not None and not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 <= fraction <= 1):
        raise FlanmixError(f"--max_dead_letter_fraction must be a number in [0, 1] (got {fraction!r})")
    return fraction


def fractions(counts: Mapping[tuple, int]) -> dict[str, tuple[int, int]]:
    """dataset -> (dead letters, examples + dead letters), for datasets with either."""
    dead, written = Counter(), Counter()
    for key, n in counts.items():
        if key[0] == "dead_letter":
            dead[key[1]] += n
        elif key[0] == "examples":
            written[key[1]] += n
    return {d: (dead[d], dead[d] + written[d]) for d in sorted(set(dead) | set(written))}


def check(counts: Mapping[tuple, int], max_fraction: float | None) -> None:
    """Raise DeadLetterLimit naming every dataset over the limit (and the total)."""
    per = fractions(counts)
    if max_fraction is None:
        lost = [f"dataset {d} lost all {tries} rows" for d, (dead, tries) in per.items() if dead and dead == tries]
        if lost:
            raise DeadLetterLimit("every row of a dataset became a dead letter: " + "; ".join(lost)
                                  + " (see dead_letter/; --max_dead_letter_fraction 1 publishes anyway); nothing was published")
        return
    over = [f"dataset {d} lost {dead} of {tries} ({dead / tries:.3f})"
            for d, (dead, tries) in per.items() if tries and dead / tries > max_fraction]
    dead_total, tries_total = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    if tries_total and dead_total / tries_total > max_fraction and len(per) > 1:
        over.append(f"the build lost {dead_total} of {tries_total} ({dead_total / tries_total:.3f})")
    if over:
        raise DeadLetterLimit(f"dead letters over --max_dead_letter_fraction {max_fraction:g}: " + "; ".join(over)
                              + "; nothing was published")
