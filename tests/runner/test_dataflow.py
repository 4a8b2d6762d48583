"""Dataflow readiness, offline: the job built with --dry_run (container, pickling), the template staged
to a GCS emulator with --template_location (job JSON, setup.py sdist), and a package installed from that
sdist working without the checkout."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines.runner import graph
from pipelines.runner import beam_options
from pipelines.runner import dataflow
from pipelines import resources
from pipelines.cli import main
from pipelines.errors import FlanmixError

from buildkit import small_mixture, small_plan
from emulators import gcs_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def _in_a_bucket(plan):
    """The plan with every source's files in gs:// (what a Dataflow build's catalog must say)."""
    return dataclasses.replace(plan, sources=tuple(
        dataclasses.replace(s, args={**s.args, "path": f"gs://flanmix-data/{s.dataset}/" + str(s.args.get("path", "")).rsplit("/", 1)[-1]}) for s in plan.sources))


def test_dataflow_check_builds_the_job_offline(tmp_path, catalog, families, vocab):
    plan = _in_a_bucket(small_plan(tmp_path, catalog, families, vocab))
    text = dataflow.check_job(plan, vocab.model_proto, "gs://corpora/small", ["--project=my-project",
                                                                              "--region=europe-west4"]).format()
    assert "dataflow check: OK" in text and dataflow.expected_image() in text
    assert "--project=my-project" in text and f"--setup_file={ROOT / 'setup.py'}" in text
    assert "WARNING" not in text
    assert f"SDK container: gcr.io/cloud-dataflow/v1beta3/{dataflow.expected_image()}\n" in text
    pickled = int(text.split(" DoFn/CombineFn payloads")[0].rsplit(" ", 1)[1])
    assert pickled >= 20  # every stage's DoFns and the report CombineFn


def test_dataflow_check_fails_where_the_launch_does_with_the_same_one_line_message(tmp_path, capsys):
    mixture = small_mixture(tmp_path)  # the shipped samples: local files a Dataflow worker cannot read
    argv = ["build", "--mixture", str(mixture), "--output", "gs://corpora/small", "--project=my-project",
            "--region=us-central1"]
    assert main([*argv, "--dataflow-check"]) == 2
    check = capsys.readouterr().err
    assert main([*argv, "--runner", "DataflowRunner"]) == 2  # the real launch refuses before anything runs
    launch = capsys.readouterr().err
    assert check == launch == (
        "flanmix: error: DataflowRunner cannot run this build: 3 dataset(s) read local files (cot_creak, cot_gsm8k, "
        "task1146_country_capital); copy the data to a bucket and point the catalog entries' loader.args.path there\n")


@pytest.mark.parametrize("output, flags, expected", [
    ("gs://corpora/small", ["--project=My Project", "--region=us-central1"],
     "Invalid Project ID (My Project). Please make sure you specified the Project ID, not project description."),
    ("gs://corpora/small", ["--project=123456", "--region=us-central1"], "Invalid Project ID (123456)."),
    ("gs://corpora/small", ["--region=us-central1"], "Missing required option: project."),
    ("gs://corpora/small", ["--project=my-project"], "Missing required option: region."),
    ("gs://corpora/small", ["--project=my-project", "--region=us-central1", "--job_name=Bad_Name"], "Invalid job_name (Bad_Name)"),
    ("/local/out", ["--project=my-project", "--region=us-central1"], "--output /local/out is a local path"),
], ids=["project-with-space", "project-number", "no-project", "no-region", "bad-job-name", "local-output"])
def test_dataflow_check_and_launch_refuse_the_same_options(tmp_path, catalog, families, vocab, output, flags, expected):
    plan = _in_a_bucket(small_plan(tmp_path, catalog, families, vocab))
    with pytest.raises(FlanmixError) as check:
        dataflow.check_job(plan, vocab.model_proto, output, flags)
    with pytest.raises(FlanmixError) as launch:  # what `flanmix build --runner DataflowRunner` runs first
        beam_options.check_launch(plan, output, ["--runner", "DataflowRunner", *flags])
    assert str(check.value) == str(launch.value)
    assert str(check.value).startswith("DataflowRunner cannot run this build: ") and expected in str(check.value)
    assert "\n" not in str(check.value)


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
