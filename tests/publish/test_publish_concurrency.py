"""Issues 16 and 17, the publish tail: --overwrite switches the manifest last with the new corpus
beside the old one (a reader sees one or the other, never a mix), concurrent builds into one root,
renames in parallel on object stores, only this build's staging removed, and a lease as strong as
the store allows (local O_EXCL, S3 conditional PUTs on the moto emulator)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.publish import commit, lease
from pipelines.publish.staging import LeaseHeld
from pipelines.runner.graph import run_build

from buildkit import digest_tree, read_back, small_plan
from emulators import s3_server  # noqa: F401 - fixture
from test_bad_input import GOOD_ROWS, toy_project

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
ROOT = Path(__file__).resolve().parents[2]


def _read_corpus(out: Path) -> str:
    """What a manifest-following reader gets: 'complete <manifest sha>' when every listed file matches
    its SHA-256, 'gone' when a listed file vanished under it, 'mix <path>' when a file's bytes are
    not the ones the manifest names."""
    try:
        data = (out / "manifest.json").read_bytes()
    except FileNotFoundError:
        return "no manifest"
    manifest = json.loads(data)
    for f in manifest["files"]:
        try:
            content = (out / f["path"]).read_bytes()
        except FileNotFoundError:
            return "gone"
        if hashlib.sha256(content).hexdigest() != f["sha256"]:
            return f"mix {f['path']}"
    return "complete " + hashlib.sha256(data).hexdigest()[:12]


def test_overwrite_puts_the_new_corpus_beside_the_old_and_switches_the_manifest_last(tmp_path, monkeypatch, catalog,
                                                                                    families, vocab):
    out = tmp_path / "out"
    first = small_plan(tmp_path, catalog, families, vocab)
    run_build(first, vocab.model_proto, str(out), IN_MEMORY)
    old = _read_corpus(out)
    assert old.startswith("complete ")
    (out / ".staging-aaaaaaaaaaaa").mkdir()  # another build's staging prefix: never ours to remove
    (out / ".staging-aaaaaaaaaaaa" / "part").write_text("x")

    seen: list[str] = []
    stop = threading.Event()

    def reader():  # a reader reading the whole time the overwrite runs
        while not stop.is_set():
            seen.append(_read_corpus(out))

    in_window: list[str] = []
    move = commit._move

    def observed_move(sources, destinations):
        if any(d.endswith("manifest.json") for d in destinations):
            in_window.append(_read_corpus(out))  # every new file is in place, the old manifest still rules
        move(sources, destinations)

    monkeypatch.setattr(commit, "_move", observed_move)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    second = small_plan(tmp_path, catalog, families, vocab, seed=1)  # same shard names, other bytes
    try:
        run_build(second, vocab.model_proto, str(out), IN_MEMORY, overwrite=True)
    finally:
        stop.set()
        thread.join(30)
    new = _read_corpus(out)
    assert new.startswith("complete ") and new != old
    assert in_window == [old]
    assert not [s for s in seen if s.startswith("mix") or s == "no manifest"], sorted(set(seen))
    assert set(seen) <= {old, new, "gone"}

    manifest = read_back(str(out))
    paths = [f["path"] for f in manifest["files"]]
    run = manifest_run = None
    for p in paths:  # published under the generation name, since the old corpus had the plain names
        assert p.split("/")[-1].count(".") == 2, p
        run = p.split(".")[-2]
        manifest_run = manifest_run or run
        assert run == manifest_run
    listed = set(paths) | set(manifest["dead_letter"]["files"])
    on_disk = {p for p in digest_tree(out) if p.split("/")[0] in lease.DATA_FOLDERS}
    assert on_disk == listed  # the old corpus's files are gone after the switch
    assert sorted(p.name for p in (out / "parquet").glob("*.parquet")) == sorted(
        p.split("/")[-1] for p in paths if p.startswith("parquet/"))  # the documented glob reads the new corpus only
    assert (out / ".staging-aaaaaaaaaaaa" / "part").read_text() == "x"
    assert not (out / f".staging-{run}").exists()


def test_generation_names_keep_the_shard_series():
    assert commit.generation_path("parquet/m-train-00001-of-00004.parquet", "0123456789ab") == \
        "parquet/m-train-00001-of-00004.0123456789ab.parquet"
    assert commit.generation_path("dead_letter/dead_letter-00000-of-00001.jsonl", "ab") == \
        "dead_letter/dead_letter-00000-of-00001.ab.jsonl"


def test_renames_on_an_object_store_run_in_a_bounded_thread_pool(monkeypatch):
    active, peak, lock = [0], [0], threading.Lock()
    done: list[str] = []

    def slow_move(sources, destinations):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            done.extend(destinations)

    monkeypatch.setattr(commit, "_move", slow_move)
    sources = [f"s3://b/out/.staging-x/parquet/f{i}" for i in range(40)]
    destinations = [s.replace(".staging-x/", "") for s in sources]
    start = time.perf_counter()
    commit._move_all(sources, destinations, threads=8)
    assert sorted(done) == sorted(destinations)
    assert 1 < peak[0] <= 8
    assert time.perf_counter() - start < 40 * 0.05 / 2  # not one object at a time


GATED_BUILD = """\
import os, sys, time
from apache_beam.io.filesystems import FileSystems
create = FileSystems.create
def gated_create(path, *args, **kwargs):  # hold the build (and its lease) until the gate file exists
    deadline = time.monotonic() + 120
    while sys.argv[1] != "-" and ".staging-" in path and not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return create(path, *args, **kwargs)
FileSystems.create = gated_create
from pipelines.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_two_concurrent_versioned_builds_into_one_root_both_complete(tmp_path):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    script = tmp_path / "gated.py"
    script.write_text(GATED_BUILD)
    gate = tmp_path / "gate"
    root = tmp_path / "corpora"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def start(gate: str, seed: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(script), gate, "--catalog", str(cat_dir), "--templates", str(tpl_dir), "build",
             "--mixture", str(mixture), "--output", str(root), "--versioned", "--seed", seed, "--num_shards", "2",
             "--progress", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    first = start(str(gate), "0")  # stops before its first staged file until the gate opens
    try:
        deadline = time.monotonic() + 120
        while not (root / "toy" / "v1" / lease.LEASE_NAME).exists():  # the first build holds v1
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = start("-", "1")
        out2, _ = second.communicate(timeout=300)
        assert first.poll() is None, "the first build ended before the second one finished"
        gate.write_text("open")
        out1, _ = first.communicate(timeout=300)
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode == 0, out1[-3000:]
    assert second.returncode == 0, out2[-3000:]
    assert f"{root}/toy/v2" in out2 and f"{root}/toy/v1" in out1
    for version in ("v1", "v2"):
        directory = root / "toy" / version
        assert read_back(str(directory))["num_examples"] > 0
        assert not list(directory.glob(".staging-*")) and not (directory / lease.LEASE_NAME).exists()
    seeds = {json.loads((root / "toy" / v / "manifest.json").read_text())["seed"] for v in ("v1", "v2")}
    assert seeds == {0, 1}


def _race(n: int, target) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = target()
        except LeaseHeld as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _hold(output: str, release: threading.Event):
    def take():
        with lease.lease(output) as mine:
            release.wait(10)
            return mine["token"]
    return take


@pytest.mark.parametrize("dead", [False, True], ids=["free", "dead-lease"])
def test_exactly_one_of_racing_builds_gets_a_local_lease(tmp_path, dead):
    out = tmp_path / "out"
    out.mkdir()
    if dead:  # an expired lease: every racer judges it dead and tries to take it over
        (out / lease.LEASE_NAME).write_text(json.dumps({"token": "old", "host": "elsewhere", "pid": 1, "expires": 1}))
    release = threading.Event()
    timer = threading.Timer(1.0, release.set)
    timer.start()
    results = _race(8, _hold(str(out), release))
    timer.cancel()
    won = [r for r in results if isinstance(r, str)]
    assert len(won) == 1, results
    assert all("another build" in str(r) for r in results if not isinstance(r, str))
    assert not (out / lease.LEASE_NAME).exists()


def test_s3_lease_uses_conditional_puts(s3_server):
    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    try:
        output = f"s3://{s3_server.bucket}/leased/out"
        store = lease._Store(f"{output}/{lease.LEASE_NAME}")
        assert store.create(b'{"token": "a"}') is True
        assert store.create(b'{"token": "b"}') is False  # If-None-Match: * refused by the store
        data, etag = store.get()
        assert data == b'{"token": "a"}'
        assert store.replace(b'{"token": "c"}', '"0000"') is False  # If-Match with a stale ETag
        assert store.replace(b'{"token": "c"}', etag) is True
        assert store.replace(b'{"token": "d"}', etag) is False  # the ETag changed with the write
        store.delete()

        release = threading.Event()
        timer = threading.Timer(1.0, release.set)
        timer.start()
        results = _race(6, _hold(output, release))
        timer.cancel()
        assert len([r for r in results if isinstance(r, str)]) == 1, results
        assert store.get() is None  # released
    finally:
        FileSystems.set_options(PipelineOptions([]))
