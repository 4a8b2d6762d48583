"""Keep Python's cycle collector off the heap a build starts with.

A build allocates millions of short-lived containers (rows, rendered strings, token lists). Each
allocation burst triggers the cycle collector, and its older generations traverse every object
alive: the imported modules of Beam, Arrow and Jinja, the catalog, the plan. On the CoT benchmark
that traversal cost about 0.6 s of a 5 s build (benchmarks/throughput.py, gc.freeze() vs not).
`gc.freeze()` moves the objects alive at that moment to a generation the collector never scans;
the job's own garbage is still collected as before.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

_launcher_frozen = False
_worker_frozen = False


@contextlib.contextmanager
def frozen_during_build() -> Iterator[None]:
    """While a build runs from this process: freeze what is alive now, and hand it back to the
    collector afterwards (`gc.unfreeze`), so a process that runs many builds leaks nothing."""
    global _launcher_frozen
    gc.freeze()
    _launcher_frozen = True
    try:
        yield
    finally:
        _launcher_frozen = False
        gc.unfreeze()


def freeze_once_in_worker() -> None:
    """From a DoFn's setup: in a worker process (Beam's multi-processing workers, Dataflow) freeze
    the start-up heap once, before the first bundle. A no-op inside `frozen_during_build`."""
    global _worker_frozen
    if not _launcher_frozen and not _worker_frozen:
        _worker_frozen = True
        gc.freeze()
