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
