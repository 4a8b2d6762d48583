"""The Beam job: catalog entries -> templates -> tokens -> packed, sharded corpus + manifest.

Reads top to bottom; each stage is a composite transform from `pipelines.transforms`. Shards and
dead letters are written under a staging prefix of the output and published by `publish.Publish`
(verify, move, manifest last), so a reader that finds manifest.json finds a complete corpus.

Runners (`pipeline_options`): without `--runner`, Beam's FnApiRunner (the DirectRunner's engine,
without its attempt to download the Prism binary); `--direct_running_mode=multi_processing
--direct_num_workers=N` runs N worker processes. DataflowRunner gets `--setup_file` pointing at the
project's setup.py unless told otherwise; PortableRunner / FlinkRunner / SparkRunner take their
usual flags. DaskRunner is refused: Beam 2.77's Dask runner silently loses data written through
file sinks.
"""
from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import publish, resources, transforms
from pipelines.errors import FlanmixError
from pipelines.plan import BuildPlan
from pipelines.stats import MergeReports
from pipelines.survey import SurveySources
from pipelines.transforms import DEAD_LETTER, STATS

LOCAL_RUNNER = "FnApiRunner"  # Beam's direct runner without the Prism download attempt


def construct(pipeline: beam.Pipeline, plan: BuildPlan, model_proto: bytes, output_dir: str, num_threads: int = -1,
              overwrite: bool = False):
    staging = publish.staging_dir(output_dir, plan)
    # Two listings of the sources, not one shared: the survey must finish before rendering starts, and
    # sharing would tie reading to the survey's stage and force every row to be encoded between stages.
    table = pipeline | "ListSourcesToSurvey" >> beam.Create(list(plan.sources)) | "SurveySources" >> SurveySources(plan)
    sources = pipeline | "ListSources" >> beam.Create(list(plan.sources))
    read = sources | "ReadSources" >> transforms.ReadSources()
    rendered = read.rows | "RenderTemplates" >> transforms.RenderTemplates(plan, table)
    tokenized = rendered.rendered | "Tokenize" >> transforms.Tokenize(plan, model_proto, num_threads)
    packed = tokenized.tokenized | "Pack" >> transforms.Pack(plan)
    shard_reports = packed | "WriteCorpus" >> transforms.WriteCorpus(plan, staging)
    dead_reports = (
        (rendered[DEAD_LETTER], tokenized[DEAD_LETTER])
        | "CollectDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> transforms.WriteDeadLetters(staging)
    )
    return (
        (read[STATS], rendered[STATS], tokenized[STATS], shard_reports, dead_reports)
        | "CollectReports" >> beam.Flatten()
        | "MergeReports" >> beam.CombineGlobally(MergeReports())
        | "Publish" >> publish.Publish(plan, output_dir, staging, overwrite, table)
    )


LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner"}
# Below this much source data one process beats N: starting Beam's worker processes and loading the
# job into each costs ~5 s on a 2-core machine, more than the demo build (2.7k examples) takes at all.
MULTIPROCESS_MIN_SOURCE_BYTES = 32 * 1024 * 1024


def _flag(args: list[str], name: str) -> str | None:
    """The value of --name / --name=value in a Beam argument list (last one wins), else None."""
    value = None
    for i, a in enumerate(args):
        if a == f"--{name}":
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def _has(args: list[str], *names: str) -> bool:
    return any(_flag(args, n) is not None for n in names)


def runner_name(beam_args: list[str]) -> str | None:
    runner = _flag(beam_args, "runner")
    return runner.rsplit(".", 1)[-1] if runner else None


def is_local(beam_args: list[str]) -> bool:
    return runner_name(beam_args) in LOCAL_RUNNERS


def default_local_args(plan: BuildPlan, cores: int | None = None) -> list[str]:
    """`flanmix build`'s default parallelism: all cores (Beam worker processes) once the sources are
    big enough to repay the processes' start-up, one in-process worker below that."""
    cores = cores or os.cpu_count() or 1
    source_bytes = sum(s.size_bytes for s in plan.sources)
    if cores > 1 and source_bytes >= MULTIPROCESS_MIN_SOURCE_BYTES:
        return ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
    return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def pipeline_options(beam_args: list[str], plan: BuildPlan | None = None, all_cores: bool = False) -> PipelineOptions:
    """Beam options with flanmix's defaults filled in where the user gave none (see the module doc).

    `all_cores`: for a local runner without --direct_running_mode / --direct_num_workers, use
    `default_local_args(plan)` (what `flanmix build` does; library callers get Beam's default)."""
    args = list(beam_args)
    runner = runner_name(args)
    if runner and "dask" in runner.lower():
        raise FlanmixError(
            "DaskRunner is not supported: in Beam 2.77 it silently loses data written through file sinks "
            "(only the last partition's writes are finalised; see README, 'Running at scale'). Use the local "
            "runner, DataflowRunner, or Flink/Spark through PortableRunner."
        )
    if runner is None:
        args.append(f"--runner={LOCAL_RUNNER}")
    if is_local(args):
        if all_cores and plan is not None and not _has(args, "direct_running_mode", "direct_num_workers"):
            args.extend(default_local_args(plan))
    elif runner == "DataflowRunner":
        if not _has(args, "setup_file", "sdk_container_image", "extra_package", "extra_packages", "requirements_file"):
            setup_py = resources.setup_file()
            if setup_py is None:
                raise FlanmixError(
                    "DataflowRunner: workers need the flanmix package; pass --setup_file PATH/TO/flanmix/setup.py "
                    "(from a checkout), --extra_package flanmix-X.tar.gz, or --sdk_container_image with flanmix installed"
                )
            args.append(f"--setup_file={setup_py}")
        if not _has(args, "save_main_session", "no_save_main_session"):
            args.append("--no_save_main_session")  # every DoFn lives in the installed package
    return PipelineOptions(args)


def remote_problems(plan: BuildPlan, output_dir: str, beam_args: list[str]) -> list[str]:
    """Why a non-local runner's workers could not run this build (local paths they cannot see)."""
    if is_local(beam_args):
        return []
    problems = []
    if "://" not in output_dir:
        problems.append(f"--output {output_dir} is a local path; {runner_name(beam_args)} workers write to a bucket (gs://, s3://)")
    local = sorted({s.dataset for s in plan.sources if "://" not in str(s.args.get("path", "://"))})
    if local:
        problems.append(
            f"{len(local)} dataset(s) read local files ({', '.join(local[:5])}{', ...' if len(local) > 5 else ''}); "
            f"copy the data to a bucket and point the catalog entries' loader.args.path there"
        )
    return problems


def run_build(plan: BuildPlan, model_proto: bytes, output_dir: str, beam_args: list[str] | None = None, num_threads: int = -1,
              overwrite: bool = False, all_cores: bool = False, progress_every: float = 0.0):
    """Run the job to completion and publish; returns the PipelineResult (the manifest is in `output_dir`).

    Refuses an `output_dir` that already holds a corpus unless `overwrite`. `progress_every` > 0 prints
    the job's counters that often (see `pipelines.progress`)."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines import progress

    options = pipeline_options(beam_args or [], plan, all_cores)
    FileSystems.set_options(options)  # the launcher checks the destination with the job's credentials
    publish.check_destination(output_dir, overwrite)
    pipeline = beam.Pipeline(runner=progress.runner_for(options, progress_every), options=options)
    construct(pipeline, plan, model_proto, output_dir, num_threads, overwrite)
    return progress.run_and_report(pipeline, progress_every)
