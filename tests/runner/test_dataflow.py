"""Dataflow readiness, offline: the job built with --dry_run (container, pickling), the template staged
to a GCS emulator with --template_location (job JSON, setup.py sdist), and a package installed from that
sdist working without the checkout."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.runner import graph
from pipelines.runner import beam_options
from pipelines.runner import dataflow
from pipelines import resources
from pipelines.cli import main

from buildkit import small_mixture, small_plan
from emulators import gcs_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def test_dataflow_check_builds_the_job_offline(tmp_path, capsys):
    mixture = small_mixture(tmp_path)
    code = main(["build", "--mixture", str(mixture), "--output", "gs://corpora/small", "--dataflow-check",
                 "--project=my-project", "--region=europe-west4"])
    assert code == 0
    text = capsys.readouterr().out
    assert "dataflow check: OK" in text and dataflow.expected_image() in text
    assert "--project=my-project" in text and f"--setup_file={ROOT / 'setup.py'}" in text
    assert "WARNING: 3 dataset(s) read local files" in text  # the shipped samples are not in a bucket
    assert f"SDK container: gcr.io/cloud-dataflow/v1beta3/{dataflow.expected_image()}\n" in text
    pickled = int(text.split(" DoFn/CombineFn payloads")[0].rsplit(" ", 1)[1])
    assert pickled >= 20  # every stage's DoFns and the report CombineFn


def test_template_staged_to_gcs_carries_the_job_and_the_sdist(gcs_server, tmp_path, catalog, families, vocab):
    bucket = f"gs://{gcs_server.bucket}"
    args = ["--runner=DataflowRunner", "--project=flanmix-test", "--region=us-central1",
            f"--temp_location={bucket}/tmp", f"--staging_location={bucket}/staging",
            f"--template_location={bucket}/templates/small.json"]
    pipeline = beam.Pipeline(options=beam_options.pipeline_options(args))
    graph.construct(pipeline, small_plan(tmp_path, catalog, families, vocab), vocab.model_proto, f"{bucket}/corpora/small")
    pipeline.run()

    with FileSystems.open(f"{bucket}/templates/small.json") as handle:
        job = json.loads(handle.read())
    env = job["environment"]
    images = [i["containerImage"] for pool in env["workerPools"] for i in pool["sdkHarnessContainerImages"]]
    assert images == [f"gcr.io/cloud-dataflow/v1beta3/{dataflow.expected_image()}"]
    assert {"use_runner_v2", "beam_fn_api"} <= set(env["experiments"])
    options = env["sdkPipelineOptions"]["options"]
    assert options["setup_file"] == str(ROOT / "setup.py") and options["save_main_session"] is False
    assert options["pipelineUrl"].endswith("/pipeline.pb") and options["project"] == "flanmix-test"

    staged = {m.path.rsplit("/", 1)[-1]: m.path for m in FileSystems.match([f"{bucket}/staging/**"])[0].metadata_list}
    with FileSystems.open(staged["workflow.tar.gz"], compression_type="uncompressed") as handle:
        names = {n.split("/", 1)[1] for n in tarfile.open(fileobj=io.BytesIO(handle.read())).getnames() if "/" in n}
    assert {"setup.py", "MANIFEST.in", "pipelines/assets/flanmix_demo_sp8k.model", "schemas/packed_encdec.features.json",
            "templates/cot_qa.yaml", "task_catalog/mixtures/demo.yaml", "pipelines/publish/commit.py", "flanmix_corpus/reader.py"} <= names


def test_package_installed_from_the_sdist_needs_no_checkout(tmp_path):
    """What a Dataflow worker does with the staged sdist: pip-install it, then import and read data
    files from the installed package, from a directory that is not the checkout."""
    dist, target = tmp_path / "dist", tmp_path / "site"
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    (sdist,) = dist.glob("flanmix-*.tar.gz")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--target", str(target), str(sdist)], check=True, capture_output=True, timeout=300)
    probe = (
        "from pipelines import resources\n"
        "from pipelines.formats import layouts as features\n"
        "from pipelines.definitions.catalog import load_catalog\n"
        "from pipelines.definitions.mixtures import load_mixture\n"
        "from pipelines.definitions.templates import load_templates\n"
        "print(resources.project_root())\n"
        "print(features.feature_spec()['layout'] if 'layout' in features.feature_spec() else 'spec')\n"
        "print(len(load_catalog()), len(load_templates()), load_mixture('demo').name)\n"
        "print(resources.default_vocab_path().is_file())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FLANMIX_HOME"}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    root, _, counts, vocab_ok = run.stdout.splitlines()
    assert root == str(target / "pipelines" / "_data")
    assert counts.endswith(" demo") and int(counts.split()[0]) == len(list((resources.catalog_dir() / "datasets").rglob("*.yaml")))
    assert vocab_ok == "True"
