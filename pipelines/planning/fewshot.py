"""Few-shot prompts: exemplars joined before the query, and fitted to the inputs budget by the
tokenizer (exemplars dropped whole from the end, never cut). Which exemplars a copy shows is a keyed
choice (`sampling.choose_variant`); how many of them fit is decided here, by token counts."""
from __future__ import annotations

from typing import Sequence

from pipelines.definitions.mixtures import FewShotConfig


def assemble_few_shot(exemplars: Sequence[str], query: str, few_shot: FewShotConfig) -> str:
    return few_shot.example_separator.join([*exemplars, query])


def estimated_fit(lengths: Sequence[int], used: int, budget: int) -> int:
    """How many exemplars of these token `lengths` fit after `used` tokens, one join token each: the
    first estimate, which the callers then check against the encoded joined text."""
    k = 0
    for n in lengths:
        if used + n + 1 > budget:
            break
        used += n + 1
        k += 1
    return k


def fit_few_shot(vocab, query: str, query_ids: list[int], shots: Sequence[str], budget: int,
                 few_shot: FewShotConfig) -> tuple[list[int], int]:
    """(ids of the longest few-shot prompt within `budget` tokens, exemplars kept): exemplars are
    dropped whole from the end, never cut. Estimates from per-piece counts, then re-encodes the
    joined text and drops more until it truly fits; 0 exemplars leaves the query alone."""
    piece_ids = vocab.encode_batch(list(shots), num_threads=1)
    k = estimated_fit([len(ids) for ids in piece_ids], len(query_ids), budget)
    while k > 0:
        ids = vocab.encode_batch([assemble_few_shot(shots[:k], query, few_shot)], num_threads=1)[0]
        if len(ids) <= budget:
            return ids, k
        k -= 1
    return query_ids, 0
