"""The Beam job: catalog entries -> templates -> tokens -> packed, sharded corpus + manifest.

Reads top to bottom; each stage is a composite transform from `pipelines.transforms`.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import manifest, transforms
from pipelines.plan import BuildPlan
from pipelines.stats import MergeReports
from pipelines.survey import SurveySources
from pipelines.transforms import DEAD_LETTER, STATS

LOCAL_RUNNER = "FnApiRunner"  # Beam's direct runner without the Prism download attempt


def construct(pipeline: beam.Pipeline, plan: BuildPlan, model_proto: bytes, output_dir: str, num_threads: int = -1):
    sources = pipeline | "ListSources" >> beam.Create(list(plan.sources))
    table = sources | "SurveySources" >> SurveySources(plan)
    read = sources | "ReadSources" >> transforms.ReadSources()
    rendered = read.rows | "RenderTemplates" >> transforms.RenderTemplates(plan, table)
    tokenized = rendered.rendered | "Tokenize" >> transforms.Tokenize(plan, model_proto, num_threads)
    packed = tokenized.tokenized | "Pack" >> transforms.Pack(plan)
    shard_reports = packed | "WriteCorpus" >> transforms.WriteCorpus(plan, output_dir)
    dead_reports = (
        (rendered[DEAD_LETTER], tokenized[DEAD_LETTER])
        | "CollectDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> transforms.WriteDeadLetters(output_dir)
    )
    return (
        (read[STATS], rendered[STATS], tokenized[STATS], shard_reports, dead_reports)
        | "CollectReports" >> beam.Flatten()
        | "MergeReports" >> beam.CombineGlobally(MergeReports())
        | "WriteManifest" >> beam.Map(manifest.write_manifest, plan, output_dir, beam.pvalue.AsSingleton(table))
    )


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append(f"--runner={LOCAL_RUNNER}")
    return PipelineOptions(args)


def run_build(plan: BuildPlan, model_proto: bytes, output_dir: str, beam_args: list[str] | None = None, num_threads: int = -1):
    """Run the job to completion; returns the PipelineResult (the manifest is in `output_dir`)."""
    options = pipeline_options(beam_args or [])
    pipeline = beam.Pipeline(options=options)
    construct(pipeline, plan, model_proto, output_dir, num_threads)
    result = pipeline.run()
    result.wait_until_finish()
    return result
