"""Issue 17: every worker process gets the filesystem options (`runner.worker_fs`), so a build with
two local worker processes publishes to s3:// (the moto emulator) byte-identical to a local build."""
from __future__ import annotations

import pickle

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.runner import worker_fs
from pipelines.runner.graph import run_build

from buildkit import digest_tree, read_back, small_plan
from emulators import s3_server  # noqa: F401 - fixture


def _s3_tree(s3, prefix: str) -> dict[str, str]:
    import hashlib

    client = s3.client()
    listing = client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: hashlib.sha256(client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()).hexdigest()
            for o in listing}


def test_s3_output_from_two_worker_processes_is_byte_identical_to_a_local_build(s3_server, tmp_path, monkeypatch,
                                                                                catalog, families, vocab):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # the keys must come from the --s3_* flags, in every worker
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    plan = small_plan(tmp_path, catalog, families, vocab)
    local = tmp_path / "local"
    run_build(plan, vocab.model_proto, str(local), ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    output = f"s3://{s3_server.bucket}/workers/small"
    try:
        run_build(plan, vocab.model_proto, output, ["--direct_running_mode=multi_processing", "--direct_num_workers=2",
                                                    *s3_server.beam_args])
        read_back(output)
    finally:
        FileSystems.set_options(PipelineOptions([]))
    assert _s3_tree(s3_server, "workers/small/") == digest_tree(local)


def test_the_carrier_applies_exactly_the_filesystem_flags_when_unpickled(monkeypatch):
    options = PipelineOptions(["--s3_endpoint_url=http://127.0.0.1:1", "--s3_access_key_id=k", "--project=p",
                               "--direct_num_workers=2", "--runner=FnApiRunner"])
    values = worker_fs.filesystem_options(options)
    assert values == {"project": "p", "s3_access_key_id": "k", "s3_endpoint_url": "http://127.0.0.1:1"}
    applied = []
    monkeypatch.setattr(FileSystems, "set_options", classmethod(lambda cls, o: applied.append(o.get_all_options(drop_default=True))))
    monkeypatch.setattr(worker_fs, "_applied", None)
    pickle.loads(pickle.dumps(worker_fs.FilesystemOptions(values)))  # what a worker does to each DoFn
    assert applied and {k: applied[0][k] for k in values} == values
    assert "direct_num_workers" not in applied[0] or applied[0]["direct_num_workers"] is None
