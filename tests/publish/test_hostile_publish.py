"""Issue 16: publishing under concurrency and leftovers: a lease per output, and no unlisted files."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from pipelines.cli import main
from pipelines.publish.lease import LEASE_NAME

from buildkit import card_listing
from test_bad_input import GOOD_ROWS, toy_project


def _argv(tmp_path):
    cat_dir, tpl_dir, mixture = toy_project(tmp_path, GOOD_ROWS)
    out = tmp_path / "out"
    return ["--catalog", str(cat_dir), "--templates", str(tpl_dir), "build", "--mixture", str(mixture),
            "--output", str(out), "--num_shards", "2"], out


def test_next_build_removes_files_its_manifest_does_not_list(tmp_path):
    argv, out = _argv(tmp_path)
    # what a killed --num_shards 200 build leaves: shards, no manifest
    for folder, suffix in (("parquet", "parquet"), ("tfrecord", "tfrecord")):
        (out / folder).mkdir(parents=True)
        for i in range(3):
            (out / folder / f"toy-train-{i:05d}-of-00200.{suffix}").write_bytes(b"stale")
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]} | set(manifest["dead_letter"]["files"]) | card_listing(manifest)
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == listed and not any("of-00200" in p for p in on_disk)


def test_second_build_into_one_output_is_refused_while_the_first_holds_the_lease(tmp_path, capsys):
    argv, out = _argv(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out.mkdir()
        (out / LEASE_NAME).write_text(json.dumps({"token": "other", "host": socket.gethostname(), "pid": holder.pid,
                                                  "started": time.time(), "expires": time.time() + 3600,
                                                  "staging": ".staging-0123456789ab"}))
        (out / ".staging-0123456789ab").mkdir()  # the running build's staged files
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"flanmix: error: {out}: another build is writing here (started ")
        assert f"by process {holder.pid} on {socket.gethostname()}); wait for it to finish, or remove {out / LEASE_NAME}" in err
        assert (out / ".staging-0123456789ab").is_dir() and not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died (kill -9): its lease is dead, the next build takes over (removing the dead
    # build's staging prefix, which the lease names) and releases it
    assert main(argv) == 0
    assert (out / "manifest.json").exists() and not (out / LEASE_NAME).exists()
    assert not (out / ".staging-0123456789ab").exists()


def test_expired_lease_does_not_block(tmp_path):
    argv, out = _argv(tmp_path)
    out.mkdir()
    (out / LEASE_NAME).write_text(json.dumps({"token": "x", "host": "elsewhere", "pid": 1, "started": 0, "expires": 1}))
    assert main(argv) == 0 and not (out / LEASE_NAME).exists()
    assert os.path.exists(out / "manifest.json")


def test_verify_against_a_lost_s3_endpoint_fails_within_the_deadline(monkeypatch):
    """An endpoint that accepts connections and never answers (what a lost S3 endpoint looks like to
    boto3): verification fails in about the configured time, naming the file, instead of retrying
    for minutes."""
    import socket as socket_lib

    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.publish.commit import PublishError, verify_file_counted
    from pipelines.formats.writers import WrittenFile

    server = socket_lib.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    monkeypatch.setenv("FLANMIX_REMOTE_TIMEOUT_S", "1.5")
    FileSystems.set_options(PipelineOptions([
        f"--s3_endpoint_url=http://127.0.0.1:{port}", "--s3_access_key_id=x", "--s3_secret_access_key=y",
        "--s3_region_name=us-east-1"]))
    try:
        start = time.perf_counter()
        with pytest.raises(PublishError) as info:
            verify_file_counted(WrittenFile("parquet/x-00000-of-00001.parquet", 1, 10, "0" * 64), "s3://bucket/out/.staging-1")
        assert time.perf_counter() - start < 5
        assert str(info.value) == ("verifying s3://bucket/out/.staging-1/parquet/x-00000-of-00001.parquet: no answer within "
                                   "1.5 s (remote storage unreachable? $FLANMIX_REMOTE_TIMEOUT_S sets the limit); not publishing")
    finally:
        FileSystems.set_options(PipelineOptions([]))
        server.close()
