"""The Beam job: catalog entries -> templates -> tokens -> packed, sharded corpus + manifest.

Reads top to bottom; each stage is a composite transform from `pipelines.transforms`. Shards and
dead letters are written under a staging prefix of the output and published by `publish.Publish`
(verify, move, manifest last), so a reader that finds manifest.json finds a complete corpus.

Runners (`pipeline_options`): without `--runner`, Beam's FnApiRunner (the DirectRunner's engine,
without its attempt to download the Prism binary); `--direct_running_mode=multi_processing
--direct_num_workers=N` runs N worker processes, and `flanmix build` picks all cores for jobs big
enough to repay them (`default_local_args`). DataflowRunner gets `--setup_file` pointing at the
project's setup.py unless told otherwise; PortableRunner / FlinkRunner / SparkRunner take their
usual flags. DaskRunner is refused: Beam 2.77's Dask runner silently loses data written through
file sinks.
"""
from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines import publish_lease
from pipelines import publish, resources, startup_heap, text_export, transforms
from pipelines.errors import FlanmixError
from pipelines.plan import BuildPlan, for_workers
from pipelines.vocab import shipped_model
from pipelines.stats import MergeReports
from pipelines.survey import SurveySources
from pipelines.transforms import DEAD_LETTER, STATS, dead_letter_report, finish_corpus

LOCAL_RUNNER = "FnApiRunner"  # Beam's direct runner without the Prism download attempt


def construct(pipeline: beam.Pipeline, plan: BuildPlan, model_proto: bytes, output_dir: str, num_threads: int = -1,
              overwrite: bool = False, spill: bool | None = None):
    """Wire the job. `spill` (default: on the local runner only) sends the tokenized examples through
    sorted run files instead of the shuffle, see `pipelines.spill`.

    With one local worker nothing runs in parallel, so the job leaves out what only spreads work
    over workers (the reshuffles after listing the sources and before verifying the files): fewer
    stages, and each stage costs the local runner a bundle set-up."""
    if not plan.sources:
        raise FlanmixError(f"mixture {plan.mixture}: its datasets list no source files; nothing to build")
    plan, publish_plan = for_workers(plan), for_workers(plan, keep_skipped=True)
    model = shipped_model(plan.vocab_path, model_proto)
    staging = publish.staging_dir(output_dir, plan)
    runner = str(pipeline.options.view_as(StandardOptions).runner or LOCAL_RUNNER)
    local = is_local(["--runner", runner])
    parallel = not local or (pipeline.options.view_as(DirectOptions).direct_num_workers or 1) > 1
    if spill is None:
        spill = local
    # Two listings of the sources, not one shared: the survey must finish before rendering starts, and
    # sharing would tie reading to the survey's stage and force every row to be encoded between stages.
    table = (
        pipeline
        | "ListSourcesToSurvey" >> beam.Create(list(plan.sources), reshuffle=parallel)
        | "SurveySources" >> SurveySources(plan, model if plan.target_tokens else None)  # tokens per example
    )
    sources = pipeline | "ListSources" >> beam.Create(list(plan.sources), reshuffle=parallel)
    read = sources | "ReadSources" >> transforms.ReadSources()
    rendered = read.rows | "RenderTemplates" >> transforms.RenderTemplates(plan, table)
    if plan.output_format == "jsonl":  # the rendered text, unpacked (pipelines.text_export)
        shard_reports = rendered.rendered | "WriteText" >> text_export.WriteText(plan, staging)
        stages = (rendered,)
    else:
        tokenized = rendered.rendered | "Tokenize" >> transforms.Tokenize(plan, model, num_threads)
        packed = tokenized.tokenized | "Pack" >> transforms.Pack(plan, spill_dir=staging if spill else None)
        shard_reports = packed | "WriteCorpus" >> transforms.WriteCorpus(plan, staging)
        stages = (rendered, tokenized)
    dead_letters = (
        tuple(stage[DEAD_LETTER] for stage in stages)
        | "CollectDeadLetters" >> beam.Flatten()
        | "DeadLetterReports" >> beam.Map(dead_letter_report)
    )
    return (
        (read[STATS], *(stage[STATS] for stage in stages), shard_reports, dead_letters)
        | "CollectReports" >> beam.Flatten()
        # Every source reports what it read, so there is always an input: no default to inject.
        | "MergeReports" >> beam.CombineGlobally(MergeReports()).without_defaults()
        | "FinishCorpus" >> beam.Map(finish_corpus, plan, staging)
        | "Publish" >> publish.Publish(publish_plan, output_dir, staging, overwrite, table, verify_in_parallel=parallel)
    )


LOCAL_RUNNERS = {None, "FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner"}
# Below this much source data one process beats N: starting Beam's worker processes and loading the
# job into each cost 2-10 s on a 2-core machine (demo: 1.7 s -> 3.8 s; CoT, 33k examples: 2.8 s -> 5.3 s;
# 117 MB of Flan-like sources, benchmarks/scale.py: 15.1 s -> 14.7 s, at twice the memory; 1.2 GB:
# 144 s -> 100 s). Parity near 120 MB, where one process needs half the memory: 128 MiB.
MULTIPROCESS_MIN_SOURCE_BYTES = 128 * 1024 * 1024
DRY_RUN_COUNT_MAX_BYTES = 32 * 1024 * 1024  # --dry-run counts rows itself only below this much source


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
    big enough to repay the processes' start-up, one in-process worker below that. The in-process
    worker talks to the runner over gRPC (`multi_threading` with one worker): as fast as `in_memory`
    here (the demo: 4.0-4.8 s either way), and unlike `in_memory` it answers progress requests while
    a bundle runs, so `--progress` can show live counters."""
    cores = cores or os.cpu_count() or 1
    source_bytes = sum(s.size_bytes for s in plan.sources)
    if cores > 1 and source_bytes >= MULTIPROCESS_MIN_SOURCE_BYTES:
        return ["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"]
    return ["--direct_running_mode=multi_threading", "--direct_num_workers=1"]


def pipeline_options(beam_args: list[str], plan: BuildPlan | None = None, all_cores: bool = False) -> PipelineOptions:
    """Beam options with flanmix's defaults filled in where the user gave none (see the module doc).

    `all_cores`: for a local runner without --direct_running_mode / --direct_num_workers, use
    `default_local_args(plan)` (what `flanmix build` does; library callers get Beam's default)."""
    return PipelineOptions(resolved_args(beam_args, plan, all_cores))


def resolved_args(beam_args: list[str], plan: BuildPlan | None = None, all_cores: bool = False) -> list[str]:
    """The Beam arguments `pipeline_options` builds from: the user's plus flanmix's defaults."""
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
    return args


LOCATION_KEYS = ("path", "paths", "data_dir", "data_files", "_builder_dir")  # loader args naming files


def _local_locations(args) -> list[str]:
    """The file locations in a source's loader args that are local paths (not gs://, s3://, ...)."""
    found = []
    for key in LOCATION_KEYS:
        value = args.get(key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item and "://" not in item:
                found.append(item)
    return found


def remote_problems(plan: BuildPlan, output_dir: str, beam_args: list[str]) -> list[str]:
    """Why a non-local runner's workers could not run this build (local paths they cannot see)."""
    if is_local(beam_args):
        return []
    problems = []
    if "://" not in output_dir:
        problems.append(f"--output {output_dir} is a local path; {runner_name(beam_args)} workers write to a bucket (gs://, s3://)")
    local = sorted({s.dataset for s in plan.sources if any(True for _ in _local_locations(s.args))})
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
    with publish_lease.lease(output_dir), startup_heap.frozen_during_build():  # one build per output
        pipeline = beam.Pipeline(runner=progress.runner_for(options, progress_every), options=options)
        construct(pipeline, plan, model_proto, output_dir, num_threads, overwrite)
        return progress.run_and_report(pipeline, progress_every)


def set_filesystem_options(beam_args: list[str]) -> None:
    """Give the launcher's FileSystems the job's storage options (S3 endpoint and keys, GCP project)."""
    from apache_beam.io.filesystems import FileSystems

    FileSystems.set_options(PipelineOptions(list(beam_args)))


def _mixture_table(plan: BuildPlan) -> str | None:
    """The mixture's weights and expected examples per task, counting rows only when that is cheap."""
    try:
        from pipelines.mixture_report import format_plan, plan_mixture

        cheap = sum(s.size_bytes for s in plan.sources) <= DRY_RUN_COUNT_MAX_BYTES
        rows, target, skipped = plan_mixture(plan.mixture_spec, plan.catalog, count=cheap)
        return format_plan(plan.mixture_spec, rows, target, skipped)
    except Exception:  # noqa: BLE001 - the table is a convenience; the plan below is what will run
        return None


def describe(plan: BuildPlan, output_dir: str, beam_args: list[str], overwrite: bool = False) -> str:
    """What `flanmix build --dry-run` prints: the resolved plan, runner and output layout."""
    source_bytes = sum(s.size_bytes for s in plan.sources)
    lines = [
        "flanmix build --dry-run: nothing was run.",
        f"mixture {plan.mixture} (split {plan.split}, seed {plan.seed}): {len(plan.datasets)} datasets, "
        f"{len(plan.sources)} source files ({source_bytes / 2**20:.1f} MiB), lengths "
        f"{plan.inputs_length}/{plan.targets_length}, overlong {plan.overlong}, {plan.num_shards} output shard(s)",
    ]
    table = _mixture_table(plan)
    if table:
        lines += ["", table]
    lines += ["", "templates per dataset:"]
    for name, ds in sorted(plan.datasets.items()):
        lines.append(f"  {name}: {', '.join(t.id for t in ds.templates)}")
    lines += ["", "Beam options: " + " ".join(resolved_args(beam_args, plan, all_cores=True))]
    prefix = f"{plan.mixture}-{plan.split}"
    last = plan.num_shards - 1
    try:
        exists = publish._exists(publish.manifest_path(output_dir))
    except Exception as exc:  # noqa: BLE001 - a dry run still prints the plan when storage is unreachable
        exists = None
        unreachable = str(exc).splitlines()[0][:200]
    lines += [
        "",
        f"output: {output_dir}",
        f"  staging:  {publish.staging_dir(output_dir, plan)}/ (removed after publishing)",
        (f"  shards:   jsonl/{prefix}-00000-of-{plan.num_shards:05d}.jsonl .. -{last:05d}-of-{plan.num_shards:05d}"
         if getattr(plan, "output_format", "packed") == "jsonl" else
         f"  shards:   tfrecord/{prefix}-00000-of-{plan.num_shards:05d}.tfrecord .. -{last:05d}-of-{plan.num_shards:05d}"
         f" (and the same under parquet/; layout {plan.layout})"),
        "  dead letters: dead_letter/dead_letter-00000-of-00001.jsonl",
        "  manifest: manifest.json, written last",
        "  existing: " + (f"unknown, the output cannot be listed: {unreachable}" if exists is None else
                          "a complete corpus; it would be " + ("replaced (--overwrite)" if overwrite else
                          "kept and the build refused (pass --overwrite or --versioned)") if exists else "none"),
    ]
    problems = remote_problems(plan, output_dir, beam_args)
    lines += [f"WARNING: {p}" for p in problems]
    return "\n".join(lines)
