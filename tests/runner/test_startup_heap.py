"""The build freezes the heap it starts with and hands it back when it ends."""
from __future__ import annotations

import gc

from pipelines.runner import startup_heap


def test_freeze_lasts_for_the_build_only_and_workers_do_not_refreeze_inside_it(monkeypatch):
    gc.unfreeze()
    monkeypatch.setattr(startup_heap, "_worker_frozen", False)
    with startup_heap.frozen_during_build():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        keep = [[] for _ in range(1000)]  # a refreeze would move these into the frozen generation
        startup_heap.freeze_once_in_worker()  # in-process worker: the launcher already froze
        assert not startup_heap._worker_frozen
        # Frozen objects may still be freed (another thread's garbage), never added: <=, not ==.
        assert gc.get_freeze_count() <= frozen and keep
    assert gc.get_freeze_count() == 0  # a process that runs many builds keeps collecting their cycles


def test_a_worker_process_freezes_once(monkeypatch):
    gc.unfreeze()
    monkeypatch.setattr(startup_heap, "_worker_frozen", False)
    try:
        startup_heap.freeze_once_in_worker()
        first = gc.get_freeze_count()
        assert first > 0 and startup_heap._worker_frozen
        keep = [[] for _ in range(1000)]  # tracked containers: a refreeze would add all of them
        startup_heap.freeze_once_in_worker()
        # Frozen objects may still be freed meanwhile (another thread's garbage), never added.
        assert gc.get_freeze_count() <= first and keep
    finally:
        gc.unfreeze()
