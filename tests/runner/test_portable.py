"""Issue 17: the portable path (Beam's Job API) as tests. Beam's own Python job service with
`--environment_type LOOPBACK` and `EXTERNAL` (a `worker_pool_main` pool, separate processes), output
local and to the S3 emulator, byte-identical to a local build; a pool whose Python lacks apache_beam
ends the build with a message after `--worker_start_timeout` instead of hanging. All servers bind
127.0.0.1 and are stopped by the tests (tests/portable_servers.py)."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.definitions.mixtures import load_mixture
from pipelines.errors import FlanmixError
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.runner.graph import run_build

from buildkit import digest_tree, read_back
from emulators import s3_server  # noqa: F401 - fixture
from portable_servers import bind_loopback_only, job_service, worker_pool

VENV_PYTHON = Path(__import__("sys").executable)


def _python_dir(directory: Path, python: str) -> str:
    """A folder whose `python` runs `python` (what a worker pool's workers start)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "python"
    script.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    script.chmod(0o755)
    return str(directory)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("portable")
    with job_service() as endpoint, worker_pool(_python_dir(tmp / "venv", str(VENV_PYTHON))) as pool:
        yield {"job_endpoint": endpoint, "pool": pool}


TINY_MIXTURE = """\
schema_version: 1
name: tiny
description: One shipped NIV2 task (8 rows) for the portable-runner tests.
seed: 0
split: train
data: samples
sequence_length: {inputs: 256, targets: 64}
members:
  - dataset: task1146_country_capital
"""


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory, catalog, families, vocab):
    """A tiny corpus built by the local runner: what every portable build must equal byte for byte."""
    tmp = tmp_path_factory.mktemp("portable_reference")
    (tmp / "tiny.yaml").write_text(TINY_MIXTURE, encoding="utf-8")
    plan = make_plan(load_mixture(tmp / "tiny.yaml"), catalog, families, vocab, BuildOptions(num_shards=2))
    out = tmp / "out"
    run_build(plan, vocab.model_proto, str(out), ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    return plan, digest_tree(out)


def _args(servers, environment: str) -> list[str]:
    args = ["--runner=PortableRunner", f"--job_endpoint={servers['job_endpoint']}", f"--environment_type={environment}"]
    if environment == "EXTERNAL":
        args.append(f"--environment_config={servers['pool']}")
    return args


def _s3_tree(s3, prefix: str) -> dict[str, str]:
    client = s3.client()
    listing = client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: hashlib.sha256(client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()).hexdigest()
            for o in listing}


@pytest.mark.parametrize("environment", ["LOOPBACK", "EXTERNAL"])
def test_portable_job_service_builds_the_local_corpus_byte_for_byte(servers, local_reference, tmp_path, monkeypatch,
                                                                    vocab, environment):
    bind_loopback_only(monkeypatch)
    plan, reference = local_reference
    out = tmp_path / "out"
    run_build(plan, vocab.model_proto, str(out), _args(servers, environment), worker_start_timeout=120)
    assert digest_tree(out) == reference


@pytest.mark.parametrize("environment", ["LOOPBACK", "EXTERNAL"])
def test_portable_job_service_publishes_to_s3_byte_for_byte(servers, local_reference, s3_server, monkeypatch, vocab,
                                                            environment):
    """The worker pool's harness never calls FileSystems.set_options: the options travel with the
    job's functions (runner.worker_fs), or WriteCorpus fails with "Must provide one of client or options"."""
    bind_loopback_only(monkeypatch)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    plan, reference = local_reference
    output = f"s3://{s3_server.bucket}/portable-{environment.lower()}/tiny"
    try:
        run_build(plan, vocab.model_proto, output, _args(servers, environment) + s3_server.beam_args,
                  worker_start_timeout=120)
        read_back(output)
    finally:
        FileSystems.set_options(PipelineOptions([]))
    assert _s3_tree(s3_server, f"portable-{environment.lower()}/tiny/") == reference


def test_a_worker_pool_without_beam_ends_the_build_with_a_message(servers, local_reference, tmp_path, monkeypatch, vocab):
    bind_loopback_only(monkeypatch)
    plan, _ = local_reference
    out = tmp_path / "out"
    with worker_pool(_python_dir(tmp_path / "bare", "/usr/bin/python3")) as pool:  # no apache_beam there
        start = time.perf_counter()
        with pytest.raises(FlanmixError) as info:
            run_build(plan, vocab.model_proto, str(out), ["--runner=PortableRunner",
                                                          f"--job_endpoint={servers['job_endpoint']}",
                                                          "--environment_type=EXTERNAL", f"--environment_config={pool}"],
                      worker_start_timeout=4)
        assert time.perf_counter() - start < 30
    assert str(info.value) == (
        f"no SDK worker ran a one-element probe job within 4 s (--environment_type EXTERNAL --environment_config {pool}): "
        f"the workers' Python needs apache_beam {__import__('apache_beam').__version__} and flanmix installed, and must "
        "reach the job service; --worker_start_timeout SECONDS sets the limit (0: no probe)")
    assert not out.exists() or not (out / "manifest.json").exists()
