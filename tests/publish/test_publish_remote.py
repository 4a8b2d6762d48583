"""Publishing to s3:// (moto_server) and gs:// (gcp-storage-emulator), both started by the tests on
127.0.0.1, and reading the corpus back with each store's own client."""
from __future__ import annotations

import hashlib
import json

import pytest

from pipelines.publish import staging
from pipelines.runner.graph import run_build
from pipelines.publish.staging import PublishError

from buildkit import SMALL_EXAMPLES, card_listing, read_back, small_plan
from emulators import gcs_server, s3_server  # noqa: F401 - fixtures

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _check_listing(keys: dict[str, bytes], prefix: str) -> dict:
    """The objects under `prefix` are exactly the manifest, the files it lists (with its checksums) and the card."""
    manifest = json.loads(keys[prefix + "manifest.json"])
    listed = {prefix + f["path"]: f for f in manifest["files"]}
    assert set(keys) == (set(listed) | {prefix + p for p in manifest["dead_letter"]["files"]} | {prefix + "manifest.json"}
                         | {prefix + p for p in card_listing(manifest)})  # and the data card
    for key, f in listed.items():
        assert hashlib.sha256(keys[key]).hexdigest() == f["sha256"] and len(keys[key]) == f["num_bytes"]
    assert not any(".staging-" in k for k in keys)
    return manifest


def test_publish_to_s3_and_read_back(s3_server, tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)
    output = f"s3://{s3_server.bucket}/corpora/small"
    run_build(plan, vocab.model_proto, output, IN_MEMORY + s3_server.beam_args)

    assert read_back(output)["num_examples"] == SMALL_EXAMPLES  # through Beam FileSystems
    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=s3_server.bucket, Prefix="corpora/small/")["Contents"]
    keys = {o["Key"]: client.get_object(Bucket=s3_server.bucket, Key=o["Key"])["Body"].read() for o in listing}
    manifest = _check_listing(keys, "corpora/small/")
    assert manifest["num_shards"] == 2

    with pytest.raises(PublishError, match="already holds a complete corpus"):
        run_build(plan, vocab.model_proto, output, IN_MEMORY + s3_server.beam_args)
    assert staging.resolve_output(f"s3://{s3_server.bucket}/corpora", "small", versioned=True) == \
        f"s3://{s3_server.bucket}/corpora/small/v1"


def test_publish_to_gcs_and_read_back(gcs_server, tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)
    base = f"gs://{gcs_server.bucket}/corpora"
    output = staging.resolve_output(base, plan.mixture, versioned=True)
    assert output == f"{base}/small/v1"
    run_build(plan, vocab.model_proto, output, IN_MEMORY)

    assert read_back(output)["num_examples"] == SMALL_EXAMPLES
    bucket = gcs_server.client().bucket(gcs_server.bucket)
    keys = {b.name: b.download_as_bytes() for b in bucket.list_blobs(prefix="corpora/small/v1/")}
    _check_listing(keys, "corpora/small/v1/")
    assert staging.resolve_output(base, plan.mixture, versioned=True) == f"{base}/small/v2"
