"""Bounded time for remote storage calls that a lost endpoint would stall.

Beam's S3 (and GCS) clients retry with exponential backoff, and botocore waits up to a minute per
connection attempt: with the endpoint gone, verifying the staged files stalled a build for many
minutes. Remote verification therefore runs each file under a deadline:
`VERIFY_BASE_SECONDS` plus one second per `VERIFY_MIN_BYTES_PER_SECOND` bytes of the file (the
slowest transfer accepted), or exactly `$FLANMIX_REMOTE_TIMEOUT_S` seconds when that is set. Past
it the build fails with a message naming the file and the limit; nothing is published. Local paths
are not bounded (no network to lose).

    >>> call_with_deadline(lambda: 42, 1.0, "a call")
    42
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable

VERIFY_BASE_SECONDS = 120.0
VERIFY_MIN_BYTES_PER_SECOND = 1024 * 1024
ENV = "FLANMIX_REMOTE_TIMEOUT_S"


class RemoteTimeout(Exception):
    """A remote call did not finish within its deadline."""


def verify_deadline(num_bytes: int) -> float:
    """Seconds allowed to re-read one staged file of `num_bytes`."""
    fixed = os.environ.get(ENV)
    if fixed:
        return float(fixed)
    return VERIFY_BASE_SECONDS + num_bytes / VERIFY_MIN_BYTES_PER_SECOND


def call_with_deadline(fn: Callable[[], Any], seconds: float, what: str) -> Any:
    """`fn()`, or RemoteTimeout after `seconds`. The call runs in a daemon thread: a stalled client
    cannot be interrupted, but it no longer holds the build (or the process's exit)."""
    results: queue.Queue = queue.Queue(maxsize=1)

    def run():
        try:
            results.put((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            results.put((False, exc))

    threading.Thread(target=run, name=f"flanmix-deadline:{what[:40]}", daemon=True).start()
    try:
        ok, value = results.get(timeout=seconds)
    except queue.Empty:
        raise RemoteTimeout(f"{what}: no answer within {seconds:g} s (remote storage unreachable? "
                            f"${ENV} sets the limit)") from None
    if ok:
        return value
    raise value
