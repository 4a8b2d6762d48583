"""Runners: output independent of the worker count, flanmix's option defaults, DaskRunner refused,
progress from Beam counters, and `--dry-run`."""
from __future__ import annotations

import dataclasses
import time

import apache_beam as beam
import pytest
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.runner import graph
from pipelines.runner import beam_options
from pipelines.runner import progress
from pipelines import resources
from pipelines.runner.graph import run_build
from pipelines.cli import main
from pipelines.errors import FlanmixError

from buildkit import digest_tree, small_mixture, small_plan


def test_output_is_byte_identical_with_one_or_two_worker_processes(tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab, num_shards=3)
    one, two = tmp_path / "one", tmp_path / "two"
    run_build(plan, vocab.model_proto, str(one), ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    run_build(plan, vocab.model_proto, str(two), ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    digests = digest_tree(one)
    # 3 TFRecord + 3 Parquet shards, dead letters, manifest, the data card (README.md, 5 plots: no few-shot here)
    assert len(digests) == 2 * 3 + 2 + 1 + 5
    assert digest_tree(two) == digests


def test_flanmix_build_uses_all_cores_once_the_job_is_big_enough(tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)
    assert beam_options.default_local_args(plan, cores=8) == ["--direct_running_mode=multi_threading", "--direct_num_workers=1"]
    big = dataclasses.replace(plan, sources=tuple(
        dataclasses.replace(s, size_bytes=beam_options.MULTIPROCESS_MIN_SOURCE_BYTES) for s in plan.sources))
    assert beam_options.default_local_args(big, cores=8) == ["--direct_running_mode=multi_processing", "--direct_num_workers=8"]

    assert beam_options.resolved_args([], big, all_cores=True)[0] == "--runner=FnApiRunner"
    assert "--direct_running_mode=multi_processing" in beam_options.resolved_args([], big, all_cores=True)
    assert beam_options.resolved_args([], big) == ["--runner=FnApiRunner"]  # library callers: Beam's default
    mine = ["--direct_num_workers=3"]
    assert beam_options.resolved_args(mine, big, all_cores=True) == mine + ["--runner=FnApiRunner"]  # the user's choice wins


def test_dataflow_gets_the_setup_file_and_no_main_session(tmp_path, catalog, families, vocab):
    args = beam_options.resolved_args(["--runner", "DataflowRunner", "--project=p"])
    assert f"--setup_file={resources.project_root() / 'setup.py'}" in args and "--no_save_main_session" in args
    assert resources.setup_file() == resources.project_root() / "setup.py"
    custom = beam_options.resolved_args(["--runner=DataflowRunner", "--sdk_container_image=me/flanmix:1"])
    assert not any(a.startswith("--setup_file") for a in custom)

    plan = small_plan(tmp_path, catalog, families, vocab)
    problems = beam_options.remote_problems(plan, str(tmp_path / "out"), ["--runner=DataflowRunner"])
    assert "is a local path" in problems[0] and "read local files" in problems[1]
    assert beam_options.remote_problems(plan, str(tmp_path / "out"), []) == []


def test_option_views_are_made_once_share_values_and_are_not_pickled():
    import pickle
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    options = beam_options.pipeline_options(["--direct_num_workers=3"])
    first = options.view_as(DirectOptions)
    assert options.view_as(DirectOptions) is first  # made once
    assert first.direct_num_workers == 3
    options.view_as(StandardOptions).streaming = True  # a value set through one view ...
    assert options.view_as(StandardOptions).streaming is True
    assert options.get_all_options()["streaming"] is True  # ... is the options' value
    restored = pickle.loads(pickle.dumps(options))
    assert "_views" not in restored.__dict__
    assert restored.view_as(DirectOptions).direct_num_workers == 3
    assert restored.view_as(StandardOptions).streaming is True


@pytest.mark.parametrize("runner", ["DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_dask_runner_is_refused_with_the_reason(runner):
    with pytest.raises(FlanmixError, match="silently loses data written through file sinks"):
        beam_options.pipeline_options([f"--runner={runner}"])


def test_progress_prints_beam_counters_while_running_and_at_the_end(tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)
    lines: list[str] = []
    options = beam_options.pipeline_options(["--direct_running_mode=multi_threading"])
    runner = progress.runner_for(options, every=0.2)
    assert isinstance(runner, progress.LiveFnApiRunner)
    runner.printer.emit = lines.append
    pipeline = beam.Pipeline(runner=runner, options=options)
    graph.construct(pipeline, plan, vocab.model_proto, str(tmp_path / "out"))
    result = progress.run_and_report(pipeline, 0.2)
    final = progress.counters_from_results(result.metrics())
    assert final["read/cot_gsm8k"] == 300 and final["written_rows"] > 0
    assert lines and f"written_rows {final['written_rows']:,}" in lines[-1]
    assert any("cot_gsm8k" in line and "read 300" in line for line in lines)


class _Slow(beam.DoFn):
    def process(self, element):
        time.sleep(0.05)
        Metrics.counter("flanmix", "slow").inc()
        yield element


def test_live_progress_reports_counters_while_a_bundle_runs():
    lines: list[str] = []
    options = PipelineOptions(["--direct_running_mode=multi_threading", "--direct_num_workers=1"])
    pipeline = beam.Pipeline(runner=progress.LiveFnApiRunner(every=0.2, emit=lines.append), options=options)
    _ = pipeline | beam.Create(list(range(40))) | beam.ParDo(_Slow())
    progress.run_and_report(pipeline, 0.2)
    seen = [int(line.split("slow ")[1].split()[0].replace(",", "")) for line in lines if "slow " in line]
    assert any(0 < n < 40 for n in seen), lines  # reported while the one bundle was still running
    assert seen[-1] == 40


def test_progress_format_is_one_global_line_then_changed_datasets():
    text = progress.format_progress({"read/a": 5, "read/b": 7, "rendered": 12}, 3.2, previous={"read/b": 7})
    assert text.splitlines() == ["[     3s] rendered 12", "         a                                read 5"]


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    mixture = small_mixture(tmp_path)
    out = tmp_path / "corpora"
    assert main(["build", "--mixture", str(mixture), "--output", str(out), "--versioned", "--num_shards", "2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "nothing was run" in text and "3 datasets" in text
    assert "cot_gsm8k: cot_gsm8k_" in text  # templates per dataset (its own family)
    assert f"output: {out}/small/v1" in text and "manifest: manifest.json, written last" in text
    assert "small-train-00000-of-00002.tfrecord" in text and "--runner=FnApiRunner" in text
    assert not out.exists()


def test_the_graph_spreads_work_only_where_there_are_workers_to_spread_it_over(tmp_path, catalog, families, vocab):
    """One local worker: no reshuffles (each is a stage the local runner pays a bundle for) and
    files verified in the commit step. Worker processes or a remote (here portable) runner: the reshuffles that let
    sources and file checks spread over workers are there."""
    plan = small_plan(tmp_path, catalog, families, vocab)

    def leaves(args: list[str]) -> dict[str, str]:
        """leaf transform name -> its URN"""
        pipeline = beam.Pipeline(options=PipelineOptions(args))
        graph.construct(pipeline, plan, vocab.model_proto, str(tmp_path / "out"))
        proto = pipeline.to_runner_api()
        return {t.unique_name: t.spec.urn for t in proto.components.transforms.values() if not t.subtransforms}

    def shuffles(names: dict[str, str]) -> list[str]:
        return sorted(n for n, urn in names.items() if urn == "beam:transform:group_by_key:v1")

    one = leaves(["--runner=FnApiRunner", "--direct_num_workers=1"])
    assert shuffles(one) == ["MergeReports/CombinePerKey/GroupByKey", "Pack/GroupByShard",
                             "SurveySources/MergeSurvey/CombinePerKey/GroupByKey", "WriteDeadLetters/GroupDeadLetters"]
    assert "Publish/VerifyAndCommit" in one and len(one) <= 35
    for args in (["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
                 ["--runner=PortableRunner", "--job_endpoint=localhost:1"]):
        many = leaves(args)
        assert len(shuffles(many)) == 4 + 4  # + a reshuffle per listing of the sources, + spread and count the checks
        assert any(n.startswith("ListSources/") and "/Reshuffle/" in n for n in many)
        assert "Publish/VerifyStaged" in many and "Publish/VerifyAndCommit" not in many
