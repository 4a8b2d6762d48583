"""Atomic publishing on the local filesystem: staging, verification, manifest last, --overwrite,
versioned layout, and builds that die part-way (an exception, a failure while publishing, SIGKILL)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.publish import commit, staging, verify
from pipelines.formats import writers
from pipelines.runner.graph import run_build
from pipelines.publish.staging import PublishError
from pipelines.formats.writers import WrittenFile

from buildkit import SMALL_EXAMPLES, card_listing, digest_tree, read_back, small_mixture, small_plan

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, catalog, families, vocab):
    """A clean build of the small mixture: what every recovered build must equal byte for byte."""
    tmp = tmp_path_factory.mktemp("reference")
    plan = small_plan(tmp, catalog, families, vocab)
    out = tmp / "out"
    run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    return plan, out


def test_publish_writes_manifest_last_and_leaves_no_staging(reference):
    plan, out = reference
    manifest = read_back(str(out))
    assert manifest["num_examples"] == SMALL_EXAMPLES
    on_disk = set(digest_tree(out))
    listed = {f["path"] for f in manifest["files"]} | set(manifest["dead_letter"]["files"]) | {"manifest.json"}
    assert on_disk == listed | card_listing(manifest)  # and the card; nothing else: no staging prefix, no temp files
    assert [f["path"] for f in manifest["files"] if f["path"].startswith("tfrecord/")] == [
        "tfrecord/small-train-00000-of-00002.tfrecord", "tfrecord/small-train-00001-of-00002.tfrecord"]
    assert not list(out.glob(".staging-*"))


def test_existing_corpus_is_refused_without_overwrite_and_replaced_with_it(reference, tmp_path, catalog, families, vocab):
    plan, ref = reference
    out = tmp_path / "out"
    run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    with pytest.raises(PublishError, match="already holds a complete corpus.*--overwrite"):
        run_build(plan, vocab.model_proto, str(out), IN_MEMORY)

    three = small_plan(tmp_path, catalog, families, vocab, num_shards=3)
    run_build(three, vocab.model_proto, str(out), IN_MEMORY, overwrite=True)
    manifest = read_back(str(out))
    assert manifest["num_shards"] == 3 and manifest["num_examples"] == SMALL_EXAMPLES
    names = sorted(p.name for p in (out / "tfrecord").iterdir())
    assert names == [f"small-train-0000{i}-of-00003.tfrecord" for i in range(3)]  # the 2-shard files are gone
    assert set(digest_tree(out)) == ({f["path"] for f in manifest["files"]} | set(manifest["dead_letter"]["files"])
                                     | {"manifest.json"} | card_listing(manifest))


def test_versioned_layout_counts_complete_versions_only(tmp_path):
    base = str(tmp_path / "corpora")
    assert staging.resolve_output(base, "small") == base
    assert staging.resolve_output(base, "small", versioned=True) == str(tmp_path / "corpora" / "small" / "v1")
    for n in (1, 2):
        (tmp_path / "corpora" / "small" / f"v{n}").mkdir(parents=True)
        (tmp_path / "corpora" / "small" / f"v{n}" / "manifest.json").write_text("{}")
    (tmp_path / "corpora" / "small" / "v3" / ".staging-abc").mkdir(parents=True)  # a run that died
    assert staging.resolve_output(base, "small", versioned=True) == str(tmp_path / "corpora" / "small" / "v3")
    assert staging.complete_versions(str(tmp_path / "corpora" / "small")) == [1, 2]


def test_verification_rejects_files_that_differ_from_what_was_written(tmp_path):
    staging = str(tmp_path)
    rows = [b"alpha", b"beta", b"gamma"]
    import io

    from apache_beam.io.tfrecordio import _TFRecordUtil

    buffer = io.BytesIO()
    for r in rows:
        _TFRecordUtil.write_record(buffer, r)
    written = writers.write_file(staging, "tfrecord/x-00000-of-00001.tfrecord", buffer.getvalue(), 3)
    assert verify.verify_file(staging, written) == written

    with pytest.raises(PublishError, match="holds 3 rows; the writer reported 4"):
        verify.verify_file(staging, WrittenFile(written.path, 4, written.num_bytes, written.sha256))
    path = tmp_path / written.path
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(PublishError, match="bytes, sha256"):
        verify.verify_file(staging, written)
    path.unlink()
    with pytest.raises(PublishError, match="is missing"):
        verify.verify_file(staging, written)

    lines = writers.write_file(staging, "dead_letter/d.jsonl", b'{"a": 1}\n{"a": 2}\n', 2)
    assert verify.verify_file(staging, lines) == lines


def test_a_missing_shard_stops_the_commit():
    files = [WrittenFile("tfrecord/m-00000-of-00003.tfrecord", 1, 1, "x"), WrittenFile("tfrecord/m-00002-of-00003.tfrecord", 1, 1, "x")]
    with pytest.raises(PublishError, match=r"shard\(s\) \[1\] were not written"):
        verify.check_complete(files)


def test_run_id_is_a_function_of_the_plan(tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)
    assert staging.run_id(plan) == staging.run_id(small_plan(tmp_path, catalog, families, vocab))
    assert staging.run_id(plan) != staging.run_id(small_plan(tmp_path, catalog, families, vocab, seed=1))


def test_a_build_that_fails_midway_leaves_no_manifest_and_a_rerun_completes(reference, tmp_path, monkeypatch, vocab):
    plan, ref = reference
    out = tmp_path / "out"
    create = FileSystems.create

    def failing_create(path, *args, **kwargs):  # storage fails on the second shard
        if "-00001-of-00002" in path:
            raise OSError("injected: disk full")
        return create(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "create", failing_create)
    with pytest.raises(Exception, match="injected: disk full"):
        run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()
    assert list(out.glob(".staging-*/*/*-00000-of-00002.*"))  # the first shard had been staged
    assert not (out / "tfrecord").exists()  # nothing reached the final names

    run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    assert digest_tree(out) == digest_tree(ref)


def test_a_build_that_dies_while_publishing_is_completed_by_a_rerun(reference, tmp_path, monkeypatch, vocab):
    plan, ref = reference
    out = tmp_path / "out"
    move, moved = commit._move, []

    def dying_move(sources, destinations):  # the connection drops after the first file
        move(sources[:1], destinations[:1])
        moved.extend(destinations[:1])
        raise OSError("injected: connection lost")

    monkeypatch.setattr(commit, "_move", dying_move)
    with pytest.raises(Exception, match="injected: connection lost"):
        run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    monkeypatch.undo()
    assert len(moved) == 1 and Path(moved[0]).exists() and not (out / "manifest.json").exists()

    run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    assert digest_tree(out) == digest_tree(ref)


KILLABLE = """\
import sys, time
from apache_beam.io.filesystems import FileSystems
create = FileSystems.create
def slow_create(path, *args, **kwargs):  # give the test time to kill us while shards are staged
    if ".staging-" in path:
        time.sleep(1.0)
    return create(path, *args, **kwargs)
FileSystems.create = slow_create
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_a_build_leaves_no_manifest_and_a_rerun_completes(reference, tmp_path, catalog, families, vocab):
    _, ref = reference
    out = tmp_path / "out"
    mixture = small_mixture(tmp_path)
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    cmd = [sys.executable, str(script), "build", "--mixture", str(mixture), "--output", str(out),
           "--num_shards", "2", "--progress", "0", *IN_MEMORY]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.is_file() for p in out.glob(".staging-*/**/*")):
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "no staged file appeared within 120 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    assert len(list(out.glob(".staging-*"))) == 1

    plan = small_plan(tmp_path, catalog, families, vocab)  # the plan the killed command made
    run_build(plan, vocab.model_proto, str(out), IN_MEMORY)
    assert digest_tree(out) == digest_tree(ref)
    assert json.loads((out / "manifest.json").read_text())["num_examples"] == SMALL_EXAMPLES
