"""What `flanmix build --dry-run` prints: the resolved plan, its mixture table, the Beam options and
the output layout, without running anything."""
from __future__ import annotations

from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import run_identity
from pipelines.publish import staging
from pipelines.runner.beam_options import remote_problems, resolved_args

DRY_RUN_COUNT_MAX_BYTES = 32 * 1024 * 1024  # --dry-run counts rows itself only below this much source


def _mixture_table(plan: BuildPlan) -> str | None:
    """The mixture's weights and expected examples per task, counting rows only when that is cheap."""
    try:
        from pipelines.planning.mixture_report import format_plan, plan_mixture

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
        exists = staging._exists(staging.manifest_path(output_dir))
    except Exception as exc:  # noqa: BLE001 - a dry run still prints the plan when storage is unreachable
        exists = None
        unreachable = str(exc).splitlines()[0][:200]
    lines += [
        "",
        f"output: {output_dir}",
        f"  staging:  {staging.staging_dir(output_dir, run_identity(plan))}/ (removed after publishing)",
        (f"  shards:   jsonl/{prefix}-00000-of-{plan.num_shards:05d}.jsonl .. -{last:05d}-of-{plan.num_shards:05d}"
         if getattr(plan, "output_format", "packed") == "jsonl" else
         _packed_shards(plan, prefix, last)),
        f"  dead letters: dead_letter/dead_letter-00000-of-{plan.dead_letter_shards:05d}.jsonl"
        + (f" .. -{plan.dead_letter_shards - 1:05d}-of-{plan.dead_letter_shards:05d}" if plan.dead_letter_shards > 1 else ""),
        "  manifest: manifest.json, written last",
        "  existing: " + (f"unknown, the output cannot be listed: {unreachable}" if exists is None else
                          "a complete corpus; it would be " + ("replaced (--overwrite)" if overwrite else
                          "kept and the build refused (pass --overwrite or --versioned)") if exists else "none"),
    ]
    problems = remote_problems(plan, output_dir, beam_args)
    lines += [f"WARNING: {p}" for p in problems]
    return "\n".join(lines)


def _packed_shards(plan, prefix: str, last: int) -> str:
    """The packed shard series of `--formats` (default: TFRecord, and the same under parquet/)."""
    formats = getattr(plan, "file_formats", ("tfrecord", "parquet"))
    first = formats[0]
    line = f"  shards:   {first}/{prefix}-00000-of-{plan.num_shards:05d}.{first} .. -{last:05d}-of-{plan.num_shards:05d}"
    also = f"and the same under {formats[1]}/; " if len(formats) > 1 else ""
    return line + f" ({also}layout {plan.layout})"
