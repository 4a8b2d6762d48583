"""Keyed hashes: the only source of randomness in a build.

Every choice (template, shard, order) is a pure function of (seed, purpose, dataset, row id), so a
build is identical on any runner, with any number of workers, in any bundle order.
"""
from __future__ import annotations

import hashlib


def keyed_hash(seed: int, purpose: str, *parts: str) -> int:
    """A 64-bit integer; `purpose` keeps independent decisions independent."""
    text = "\x1f".join((str(seed), purpose, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def keyed_choice(n: int, seed: int, purpose: str, *parts: str) -> int:
    return keyed_hash(seed, purpose, *parts) % n


def placement(seed: int, num_shards: int, dataset: str, key: str) -> tuple[int, int]:
    """(output shard, order within it) of one example: a single keyed hash gives both, so every
    output format (packed or text) puts an example in the same shard at the same place."""
    order = keyed_hash(seed, "order", dataset, key)
    return order % num_shards, order
