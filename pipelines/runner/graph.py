"""The Beam job: catalog entries -> templates -> tokens -> packed, sharded corpus + manifest.

Reads top to bottom; each stage is a composite transform from its module in `pipelines.stages`. Shards and
dead letters are written under a staging prefix of the output and published by `commit.Publish`
(verify, move, manifest last), so a reader that finds manifest.json finds a complete corpus.

Runners (`beam_options.pipeline_options`): without `--runner`, Beam's FnApiRunner (the DirectRunner's engine,
without its attempt to download the Prism binary); `--direct_running_mode=multi_processing
--direct_num_workers=N` runs N worker processes, and `flanmix build` picks all cores for jobs big
enough to repay them (`beam_options.default_local_args`). DataflowRunner gets `--setup_file` pointing at the
project's setup.py unless told otherwise; PortableRunner / FlinkRunner / SparkRunner take their
usual flags. DaskRunner is refused: Beam 2.77's Dask runner silently loses data written through
file sinks.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from pipelines.errors import FlanmixError
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import ManifestSlice, OutputSlice, run_identity
from pipelines.publish.commit import Publish
from pipelines.publish.staging import check_destination, staging_dir
from pipelines.records import DEAD_LETTER, STATS
from pipelines.publish import lease as publish_lease
from pipelines.runner import portable, startup_heap, worker_fs
from pipelines.runner.beam_options import LOCAL_RUNNER, is_local, pipeline_options
from pipelines.stages.dead_letters import WriteDeadLetters
from pipelines.stages.exemplars import GroupExemplars
from pipelines.stages.finish import MergeReports, finish_corpus
from pipelines.stages.pack import Pack, shard_order_key
from pipelines.stages.spill import SpillRunsFn
from pipelines.stages.read import ReadSources
from pipelines.stages.render import RenderTemplates
from pipelines.stages.survey import SurveySources
from pipelines.stages.tokenize import Tokenize
from pipelines.stages.write import WriteCorpus
from pipelines.stages.write_text import WriteText
from pipelines.vocab import shipped_model


def construct(pipeline: beam.Pipeline, plan: BuildPlan, model_proto: bytes, output_dir: str, num_threads: int = -1,
              overwrite: bool = False, spill: bool | None = None):
    """Wire the job. `spill` (default: on the local runner only) sends the tokenized examples through
    sorted run files instead of the shuffle, see `stages.spill`.

    With one local worker nothing runs in parallel, so the job leaves out what only spreads work
    over workers (the reshuffles after listing the sources and before verifying the files): fewer
    stages, and each stage costs the local runner a bundle set-up."""
    if not plan.sources:
        raise FlanmixError(f"mixture {plan.mixture}: its datasets list no source files; nothing to build")
    model = shipped_model(plan.vocab_path, model_proto)
    staging = staging_dir(output_dir, run_identity(plan))
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
    if plan.cache_dir:  # --cache: per source file, its stored entry or read + render + tokenize (pipelines/cache)
        from pipelines.cache.keys import task_keys
        from pipelines.cache.stage import (GATED, PASSED, ROWS, TASK_PARTS, TOKENIZED, CachedEncode, CachedGroupEncode,
                                           StoreTaskIndexes, TaskGate)

        dataset_keys = task_keys(plan)  # once: every cache transform keys its entries by them
        gate = None
        if plan.exemplar_groups:  # tasks with exemplar groups: replayed whole from their index, or read and grouped
            gate = sources | "TaskGate" >> TaskGate(plan, table, dataset_keys, spread=parallel)
            sources = gate[PASSED]
        cached = sources | "CachedEncode" >> CachedEncode(plan, model, table, num_threads, dataset_keys)
        stages, stats, items = (cached,), (), cached.tokenized
        pack_spill = staging if spill else None
        if gate is not None:
            read = gate[GATED] | "ReadGroupedTasks" >> CachedEncode(plan, model, table, num_threads, dataset_keys)  # rows only
            rows = read[ROWS] | "GroupExemplars" >> GroupExemplars(plan, table, spill_dir=staging if spill else None)
            grouped = rows | "CachedGroupEncode" >> CachedGroupEncode(plan, model, table, num_threads, dataset_keys)
            _ = (read[TASK_PARTS], grouped[TASK_PARTS]) | "TaskParts" >> beam.Flatten() | "StoreTaskIndexes" >> StoreTaskIndexes(plan.cache_dir)
            stages = (cached, gate, read, grouped)
            items = (cached.tokenized, gate[TOKENIZED], grouped.tokenized)
            # Each branch spills in its own stage and only the run references meet, in Pack's shuffle: with a
            # Flatten straight into Pack's spill DoFn, multi_processing builds lost examples now and then
            # (the row ledger caught 4 of ~20 few-shot builds; 0 of 10 since).
            if spill:
                items = tuple(branch | f"SpillRuns{i}" >> beam.ParDo(SpillRunsFn(staging, shard_order_key))
                              for i, branch in enumerate(items))
            items = items | "MergeTokenized" >> beam.Flatten()
            pack_spill = None
    else:
        read = sources | "ReadSources" >> ReadSources()
        rows = read.rows
        if plan.exemplar_groups:  # a few-shot setting is wanted: exemplars from each row's group (stages.exemplars)
            rows = rows | "GroupExemplars" >> GroupExemplars(plan, table, spill_dir=staging if spill else None)
        rendered = rows | "RenderTemplates" >> RenderTemplates(plan, table)
        stages, stats = (rendered,), (read[STATS],)
        if plan.output_format != "jsonl":
            tokenized = rendered.rendered | "Tokenize" >> Tokenize(plan, model, num_threads)
            stages, items = (rendered, tokenized), tokenized.tokenized
        pack_spill = staging if spill else None
    if plan.output_format == "jsonl":  # the rendered text, unpacked (stages.write_text)
        shard_reports = rendered.rendered | "WriteText" >> WriteText(plan, staging)
    else:
        packed = items | "Pack" >> Pack(plan, spill_dir=pack_spill)
        shard_reports = packed | "WriteCorpus" >> WriteCorpus(plan, staging)
    dead_letters = (
        tuple(stage[DEAD_LETTER] for stage in stages)
        | "CollectDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(plan.seed, plan.dead_letter_shards, staging)  # by the workers holding them
    )
    published = (
        (*stats, *(stage[STATS] for stage in stages), shard_reports, dead_letters)
        | "CollectReports" >> beam.Flatten()
        # Every source reports what it read, so there is always an input: no default to inject.
        | "MergeReports" >> beam.CombineGlobally(MergeReports()).without_defaults()
        | "FinishCorpus" >> beam.Map(finish_corpus, OutputSlice.of(plan), staging)
        | "Publish" >> Publish(ManifestSlice.of(plan), output_dir, staging, overwrite, table, verify_in_parallel=parallel)
    )
    worker_fs.attach(pipeline, pipeline.options)  # every worker gets the filesystem options (runner.worker_fs)
    return published



def run_build(plan: BuildPlan, model_proto: bytes, output_dir: str, beam_args: list[str] | None = None, num_threads: int = -1,
              overwrite: bool = False, all_cores: bool = False, progress_every: float = 0.0,
              worker_start_timeout: float = portable.DEFAULT_WORKER_START_TIMEOUT):
    """Run the job to completion and publish; returns the PipelineResult (the manifest is in `output_dir`),
    or None when `--cache` held this very corpus and it was published without a job (`cache.corpus`).

    Refuses an `output_dir` that already holds a corpus unless `overwrite`. `progress_every` > 0 prints
    the job's counters that often (see `pipelines.runner.progress`). On a portable runner whose workers
    are separate (EXTERNAL, PROCESS, DOCKER), a probe job must finish within `worker_start_timeout`
    seconds first (`runner.portable`), so workers that never start end the build with a message."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.runner import progress

    options = pipeline_options(beam_args or [], plan, all_cores)
    FileSystems.set_options(options)  # the launcher checks the destination with the job's credentials
    worker_fs.cache_s3_clients()  # one S3 client per process, not one per call
    check_destination(output_dir, overwrite)
    portable.probe_workers(options, worker_start_timeout)  # workers that never start: a message, not a hang
    staging = staging_dir(output_dir, run_identity(plan))
    with publish_lease.lease(output_dir, staging=staging), startup_heap.frozen_during_build():  # one build per output
        from apache_beam.options.pipeline_options import GoogleCloudOptions

        use_corpus_cache = plan.cache_dir and not options.view_as(GoogleCloudOptions).template_location
        if use_corpus_cache:  # --cache: an unchanged build publishes its stored corpus, without a job
            from pipelines.cache import corpus

            lookup = corpus.replay(plan, output_dir, overwrite)
            if lookup.replayed:
                return None
        pipeline = beam.Pipeline(runner=progress.runner_for(options, progress_every), options=options)
        construct(pipeline, plan, model_proto, output_dir, num_threads, overwrite)
        result = progress.run_and_report(pipeline, progress_every)
        if use_corpus_cache:
            corpus.store(plan, lookup, output_dir)
        return result

