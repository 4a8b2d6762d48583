"""`flanmix` command line. Flags live only here; everything else takes explicit arguments.

    flanmix [--catalog DIR|+DIR] [--templates DIR] VERB ...   (`flanmix VERB --help`: every flag with its default)
    flanmix build --mixture demo --output out/demo [--seed N] [--num_shards N] [--vocab PATH] [Beam options]
                  [--overwrite] [--versioned] [--dry-run] [--dataflow-check] [--progress SECONDS]
                  [--layout encdec|decoder] [--decoder_length N] [--format packed|jsonl] [--pack_buffer N]
                  [--formats tfrecord,parquet]
    flanmix catalog list [--collection C] [--category "Question Answering"] | show NAME | stats [--json]
    flanmix templates lint [--rows N] [--no-source] | preview DATASET -n 3 [--fixtures] [--setting zs_opt|zs_noopt|fs_opt|fs_noopt]
    flanmix templates import-promptsource PATH [--family NAME] [--output DIR]
    flanmix mixtures list | show NAME [--no-count] [--json] [--verbose]
    flanmix vocab train --output PREFIX
    flanmix card DIR                                    (re)write a corpus's data card from its manifest
    flanmix sources snapshot --mixture NAME --to DIR|gs://...|s3://... [--strict] [Beam options]
    flanmix sources verify DIR | diff A B                 pinned source snapshots (build --sources DIR)
    flanmix inspect DIR [--row N | --dataset NAME] [-n K] [--from parquet|tfrecord] [--json]
    flanmix train --corpus out/demo --model tiny --steps 20 --batch_size 2 --out ckpt/ [--init PATH] [--remat P]
    flanmix export --checkpoint ckpt/ --to hf DIR       a Hugging Face T5 directory (or a decoder-only export)
    flanmix eval --checkpoint ckpt/ --out F [--jsonl F]  greedy decoding, exact match per task, JSON out
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Sequence

from pipelines import resources
from pipelines.definitions import render_budget
from pipelines.errors import FlanmixError


def _load_catalog(args):
    """The catalog `--catalog` names (`+DIR`: the shipped catalog plus DIR's entries). Entries that do
    not load are left out with a warning and kept in `args.broken_entries` (see broken_entries)."""
    from pipelines.definitions.catalog import Catalog, load_catalog

    broken: list = []
    spec = args.catalog
    if spec and spec.startswith("+"):
        catalog = load_catalog(None, broken)
        extra = load_catalog(spec[1:], broken)
        clash = sorted(set(catalog.entries) & set(extra.entries))
        if clash:
            raise FlanmixError(f"--catalog {spec}: {extra[clash[0]].source_path} reuses the shipped dataset name "
                               f"{clash[0]!r} ({catalog[clash[0]].source_path}); pick another name")
        catalog = Catalog({**catalog.entries, **extra.entries})
    else:
        catalog = load_catalog(spec, broken)
    args.broken_entries = broken
    for entry in broken:
        print(f"flanmix: warning: catalog entry left out, it does not load: {entry}", file=sys.stderr)
    return catalog


def _load_catalog_and_templates(args):
    from pipelines.definitions.templates import load_templates

    return _load_catalog(args), load_templates(args.templates)


# --- build ---------------------------------------------------------------------------------------

def cmd_build(args, beam_args: list[str]) -> int:
    from pipelines.runner import beam_options, dry_run
    from pipelines.runner import progress
    from pipelines.publish import staging
    from pipelines.runner.graph import run_build
    from flanmix_corpus.reader import read_manifest
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.planning.plan import BuildOptions, make_plan

    from pipelines.vocab import Vocabulary

    from pipelines.runner import argcheck

    argcheck.check_build_numbers(args)  # before anything is loaded or started
    argcheck.unknown_flags(beam_args, BUILD_FLAGS)
    argcheck.check_output(args.output)
    from pipelines.formats.file_formats import parse_formats

    file_formats = parse_formats(args.formats) if args.formats is not None else None  # before anything loads
    from pipelines.definitions.broken_entries import refuse_if_needed

    catalog, families = _load_catalog_and_templates(args)
    mixture = load_mixture(args.mixture)
    refuse_if_needed(mixture, args.broken_entries)
    vocab = Vocabulary.load(args.vocab or resources.default_vocab_path())
    options = BuildOptions(
        seed=args.seed, num_shards=args.num_shards, inputs_length=args.inputs_length,
        targets_length=args.targets_length, overlong=args.overlong, target_examples=args.target_examples,
        target_tokens=args.target_tokens, strict=args.strict, layout=args.layout,
        decoder_length=args.decoder_length, output_format=args.format, pack_buffer=args.pack_buffer,
        render_budget=render_budget.current(), max_dead_letter_fraction=args.max_dead_letter_fraction,
        sources=args.sources,
        file_formats=file_formats,
        cache=args.cache,
    )
    if args.sources:
        beam_options.set_filesystem_options(beam_args)  # the launcher reads sources.json with the job's options
    plan = make_plan(mixture, catalog, families, vocab, options)
    for name, reason in plan.skipped[:10]:
        print(f"flanmix build: skipping {name}: {reason}")
    if len(plan.skipped) > 10:
        print(f"flanmix build: ... and {len(plan.skipped) - 10} more sources skipped (all listed in the manifest)")
    print(f"flanmix build: mixture {plan.mixture}, {len(plan.datasets)} datasets, {len(plan.sources)} source files, "
          f"{plan.num_shards} output shard(s), lengths {plan.inputs_length}/{plan.targets_length}, seed {plan.seed}")
    if args.dataflow_check:
        from pipelines.runner.dataflow import check_job

        print(check_job(plan, vocab.model_proto, args.output, beam_args).format())
        return 0
    beam_options.set_filesystem_options(beam_args)
    progress.quiet_known_beam_noise()
    output = staging.resolve_output(args.output, plan.mixture, args.versioned)
    if args.dry_run:
        print(dry_run.describe(plan, output, beam_args, args.overwrite))
        return 0
    beam_options.check_launch(plan, output, beam_args)  # what the launch would refuse, in one line
    if beam_options.runner_name(beam_args) != "DataflowRunner":
        for problem in beam_options.remote_problems(plan, output, beam_args):  # may share a filesystem
            print(f"flanmix build: WARNING: {problem}")
    if args.cache and "://" not in args.cache and not beam_options.is_local(beam_args):
        print(f"flanmix build: WARNING: --cache {args.cache} is local: remote workers cannot share it "
              f"(use a gs:// or s3:// prefix); only the whole-corpus entries on this machine will be reused")
    start = time.perf_counter()
    try:
        for attempt in range(10):
            try:
                run_build(plan, vocab.model_proto, output, beam_args, overwrite=args.overwrite, all_cores=True,
                          progress_every=args.progress, worker_start_timeout=args.worker_start_timeout)
                break
            except staging.LeaseHeld:  # --versioned: another build took vN a moment ago; take the next one
                if not args.versioned or attempt == 9:
                    raise
                output = staging.resolve_output(args.output, plan.mixture, args.versioned)
    except Exception as exc:  # noqa: BLE001 - re-raised; a FlanmixError inside the job arrives wrapped
        _reraise_job_error(exc)
    wall = time.perf_counter() - start
    if beam_options._has(beam_args, "template_location"):
        print(f"flanmix build: Dataflow template written to {beam_options._flag(beam_args, 'template_location')}")
        return 0
    print_summary(read_manifest(output), output, wall)
    return 0


def print_summary(manifest: dict, output: str, wall: float | None = None) -> None:
    rows = []
    for name, d in manifest["datasets"].items():
        rows.append((name[:48], d["rows_read"], d["examples"], d["inputs_tokens"] + d["targets_tokens"],
                     d["truncated"], sum(d["dead_letter"].values())))
    print(f"\n{'dataset':48} {'read':>7} {'examples':>9} {'tokens':>10} {'trunc':>6} {'dead':>5}")
    for r in rows:
        print(f"{r[0]:48} {r[1]:7d} {r[2]:9d} {r[3]:10d} {r[4]:6d} {r[5]:5d}")
    tot = [sum(r[i] for r in rows) for i in range(1, 6)]
    print(f"{'TOTAL':48} {tot[0]:7d} {tot[1]:9d} {tot[2]:10d} {tot[3]:6d} {tot[4]:5d}")
    eff = manifest.get("packing_efficiency")
    if eff is None:  # --format jsonl
        print(f"\n{manifest['num_rows']} text examples in {manifest['num_shards']} shard(s) (jsonl, unpacked); "
              f"dead letters {manifest['dead_letter']['count']}")
    else:
        effs = ", ".join(f"{k} {v:.3f}" for k, v in eff.items())
        print(f"\n{manifest['num_rows']} packed rows ({manifest.get('layout', 'encdec')}) in {manifest['num_shards']} "
              f"shard(s); packing efficiency {effs}; dead letters {manifest['dead_letter']['count']}")
    mixing = manifest.get("mixing") or {}
    if mixing:
        shares = ", ".join(f"{c} {v['realized_share']:.3f}/{v['target_share']:.3f}" for c, v in mixing["collections"].items())
        print(f"collections realized/target: {shares}; downsampled {mixing['downsampled']}, upsampled {mixing['upsampled']}")
        settings = ", ".join(f"{s} {v['realized_share']:.3f}" for s, v in mixing["prompt_settings"].items())
        print(f"prompt settings: {settings}; few-shot exemplars per prompt: {mixing['few_shot']['exemplars_per_prompt']}")
        skipped = mixing["skipped_sources"]
        for s in skipped[:10]:
            print(f"SKIPPED {s['dataset']}: {s['reason'].splitlines()[0]}")
        if len(skipped) > 10:
            print(f"SKIPPED ... and {len(skipped) - 10} more (manifest.json: mixing.skipped_sources)")
    cache = manifest.get("cache")
    if cache:  # --cache (pipelines/cache)
        print("cache: unchanged, the stored corpus was published without a job" if cache["corpus_hit"] else
              f"cache: {cache['hits']} source file(s) served, {cache['misses']} built"
              + (f", {cache['uncacheable']} not cacheable (hf/tfds)" if cache["uncacheable"] else "")
              + (f"; few-shot tasks: {cache.get('task_hits', 0)} served whole, {cache.get('task_misses', 0)} read"
                 if cache.get("task_hits") or cache.get("task_misses") else "")
              + (f"; exemplar groups: {cache.get('group_hits', 0)} served, {cache.get('group_misses', 0)} built"
                 if cache.get("group_hits") or cache.get("group_misses") else "")
              + (f", {cache['corrupt']} corrupt entries ignored" if cache["corrupt"] else ""))
    data_dirs = "jsonl/" if manifest.get("format") == "jsonl" else ", ".join(f"{f}/" for f in manifest.get("formats") or ("tfrecord", "parquet"))
    print(f"output: {output} (manifest.json, {data_dirs}, dead_letter/)" + (f"; wall {wall:.1f}s" if wall else ""))


# --- sources: snapshots of a mixture's sources ---------------------------------------------------

def cmd_sources(args, beam_args: list[str]) -> int:
    from pipelines.runner import beam_options, progress

    beam_options.set_filesystem_options(beam_args)
    if args.sources_cmd == "snapshot":
        from pipelines.definitions.broken_entries import refuse_if_needed
        from pipelines.definitions.mixtures import load_mixture
        from pipelines.sources.manifest import load
        from pipelines.sources.snapshot import plan_snapshot, run_snapshot

        argcheck_unknown(beam_args)
        if not beam_options.is_local(beam_args) and "://" not in args.to:
            raise FlanmixError(f"sources snapshot: --to {args.to} is a local path; "
                               f"{beam_options.runner_name(beam_args)} workers write to a bucket (gs://, s3://)")
        catalog = _load_catalog(args)
        mixture = load_mixture(args.mixture)
        refuse_if_needed(mixture, args.broken_entries)
        plan = plan_snapshot(mixture, catalog, args.to, strict=args.strict)
        shards = sum(len(j.shards) for j in plan.jobs)
        print(f"flanmix sources snapshot: mixture {mixture.name}: {len(plan.jobs)} source(s) to fetch ({shards} file(s)), "
              f"{len(plan.kept)} unchanged, {len(plan.failed)} cannot be fetched")
        progress.quiet_known_beam_noise()
        start = time.perf_counter()
        try:
            run_snapshot(plan, beam_args, args.progress)
        except Exception as exc:  # noqa: BLE001 - re-raised; a FlanmixError inside the job arrives wrapped
            _reraise_job_error(exc)
        wall = time.perf_counter() - start
        snapshot = load(args.to)
        fetched = {j.dataset for j in plan.jobs}
        rows, lines = 0, []
        for name in sorted({j.dataset for j in plan.jobs} | set(plan.kept) | set(plan.failed)):
            src = snapshot.sources[name]
            n = sum(src.get("rows", {}).values())
            if src.get("status") == "ok" and name in fetched and "refresh_failed" not in src:
                rows += n
            state = ("FAILED " + src["reason"].splitlines()[0]) if src["status"] != "ok" else \
                ("kept (refresh failed: " + src["refresh_failed"].splitlines()[0] + ")") if "refresh_failed" in src else \
                ("fetched" if name in fetched else "unchanged")
            lines.append((state.startswith(("FAILED", "kept")), f"{name:48} {n:9d} rows  {state}"))
        for notable, text in lines:
            if notable or len(lines) <= SOURCES_LISTED:
                print(text)
        if len(lines) > SOURCES_LISTED:
            print(f"({len(lines)} sources; those fetched or unchanged are not listed: sources.json has them all)")
        print(f"snapshot {args.to}: sources.json sha256 {snapshot.sha256}; {rows} rows fetched in {wall:.1f}s")
        return 0
    if args.sources_cmd == "verify":
        from pipelines.sources.check import verify_snapshot

        snapshot, problems = verify_snapshot(args.dir)
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        files = sum(len(s.get("shards", [])) for s in snapshot.sources.values())
        if problems:
            print(f"sources verify: {len(problems)} of {files} file(s) fail", file=sys.stderr)
            return 1
        print(f"sources verify: OK ({len(snapshot.sources)} sources, {files} files; sources.json sha256 {snapshot.sha256})")
        return 0
    from pipelines.sources.check import diff_snapshots

    diffs = diff_snapshots(args.a, args.b)
    for d in diffs:
        if d.status == "unchanged" and not args.all:
            continue
        print(f"{d.status:9} {d.dataset}" + "".join(f"\n          {line}" for line in d.detail))
    changed = sum(d.differs for d in diffs)
    print(f"sources diff: {changed} of {len(diffs)} source(s) differ")
    return 1 if changed and args.exit_code else 0


SOURCES_LISTED = 40  # a snapshot summary lists every source up to this many, else only the failed ones


def argcheck_unknown(beam_args: list[str]) -> None:
    from pipelines.runner import argcheck

    argcheck.unknown_flags(beam_args, BUILD_FLAGS)


# --- card / inspect: reading a published corpus ---------------------------------------------------

def cmd_card(args, beam_args: list[str]) -> int:
    """(Re)write README.md and card/ of a published corpus from its manifest."""
    from apache_beam.io.filesystems import FileSystems

    from flanmix_corpus.reader import open_corpus
    from pipelines.publish import card
    from pipelines.runner import beam_options

    beam_options.set_filesystem_options(beam_args)
    info = open_corpus(args.dir)
    written = card.write_card(info.manifest, info.root)
    stale = [FileSystems.join(info.root, p) for p in card.stale_plots(written)]
    stale = [p for p in stale if FileSystems.exists(p)]
    if stale:
        FileSystems.delete(stale)
    for f in written:
        print(f"wrote {FileSystems.join(info.root, f.path)} ({f.num_bytes:,} bytes)")
    return 0


def cmd_inspect(args, beam_args: list[str]) -> int:
    from flanmix_corpus.reader import open_corpus
    from pipelines.consumers import row_inspect
    from pipelines.runner import beam_options

    beam_options.set_filesystem_options(beam_args)
    if args.row is not None and args.dataset is not None:
        raise FlanmixError("inspect: give --row N or --dataset NAME, not both")
    rows = row_inspect.inspect_corpus(args.dir, row=args.row, dataset=args.dataset, n=args.n,
                                      source=args.source, vocab_path=args.vocab)
    if args.json:
        sys.stdout.write(row_inspect.json_lines(rows))
    else:
        print(row_inspect.format_rows(rows, open_corpus(args.dir)))
    return 0


# --- catalog -------------------------------------------------------------------------------------

def cmd_catalog(args) -> int:
    catalog = _load_catalog(args)
    if args.catalog_cmd == "list":
        for e in catalog.filter(args.collection, args.category):
            print(f"{e.name:56} {','.join(e.collections):10} {e.loader_type:10} {'; '.join(e.task_categories)}")
        return 0
    if args.catalog_cmd == "stats":
        from pipelines.definitions.catalog_stats import catalog_stats, format_stats

        stats = catalog_stats(catalog)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return 0
    entry = catalog[args.name]
    print(open(entry.source_path, encoding="utf-8").read().rstrip())
    return 0


# --- templates -----------------------------------------------------------------------------------

def cmd_templates(args) -> int:
    from pipelines.definitions.lint import lint_catalog

    if args.templates_cmd == "import-promptsource":
        return import_promptsource(args)
    catalog, families = _load_catalog_and_templates(args)
    if args.templates_cmd == "lint":
        problems = [*args.broken_entries, *lint_catalog(catalog, families, render_rows=args.rows, read_source=not args.no_source)]
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        n_templates = sum(len(f.templates) for f in families.values())
        if problems:
            print(f"templates lint: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"templates lint: OK ({len(families)} families, {n_templates} templates, {len(catalog)} datasets)")
        return 0
    from pipelines.cli.preview import preview, preview_setting_cmd

    if args.setting:  # the build's decisions for one prompt setting (cli.prompt_preview)
        return preview_setting_cmd(catalog, families, args)
    return preview(catalog, families, args.dataset, args.n, args.template, args.fixtures)


def import_promptsource(args) -> int:
    from pipelines.definitions.promptsource_import import import_file

    out_dir = args.output or args.templates or str(resources.templates_dir())
    path, family, skipped = import_file(args.path, out_dir, args.family, args.force)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {path}: family {family['family']}, {len(family['templates'])} template(s); name it in a "
          f"catalog entry's `templates:` and run `flanmix templates lint`")
    return 0


# --- mixtures ------------------------------------------------------------------------------------

def cmd_mixtures(args) -> int:
    import dataclasses

    from pipelines.planning.mixture_report import format_plan, plan_mixture
    from pipelines.definitions.mixtures import load_mixture, mixtures_dir

    if args.mixtures_cmd == "list":
        for path in sorted(mixtures_dir().glob("*.yaml")):
            m = load_mixture(path)
            print(f"{m.name:24} {m.description}")
        return 0
    mixture = load_mixture(args.name)
    rows, target, skipped = plan_mixture(mixture, _load_catalog(args), count=args.count)
    if args.json:
        print(json.dumps({"mixture": mixture.name, "target_examples": target,
                          "tasks": [dataclasses.asdict(r) for r in rows],
                          "skipped": [{"dataset": n, "reason": r} for n, r in skipped]}, indent=2))
    else:
        print(format_plan(mixture, rows, target, skipped, verbose=args.verbose))
    return 0


def _reraise_job_error(exc: Exception):
    """A FlanmixError raised inside a job, unwrapped from the runner's error as one line; anything
    else re-raised as it is."""
    from pipelines.runner.job_errors import flanmix_error_in

    message = flanmix_error_in(exc)
    if message is None:
        raise exc
    raise FlanmixError(message) from None


# --- vocab ---------------------------------------------------------------------------------------

def cmd_vocab(args) -> int:
    from pipelines.cli.vocab_texts import vocabulary_texts
    from pipelines.definitions.mixtures import load_mixture, resolve_datasets
    from pipelines.vocab import Vocabulary, train_vocabulary

    from pipelines.definitions.broken_entries import refuse_if_needed

    catalog, families = _load_catalog_and_templates(args)
    refuse_if_needed(load_mixture(args.mixture), args.broken_entries)
    entries = resolve_datasets(load_mixture(args.mixture), catalog)

    path = train_vocabulary(vocabulary_texts(entries, families), args.output, vocab_size=args.vocab_size,
                            whitespace=args.whitespace)
    vocab = Vocabulary.load(path)
    print(f"wrote {path}: {vocab.vocab_size} pieces, whitespace {vocab.whitespace}, sha256 {vocab.spec.sha256}")
    return 0


# --- parser --------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flanmix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", metavar="DIR|+DIR",
                        help="catalog directory replacing the shipped one; +DIR adds DIR's entries to the shipped "
                             "catalog (default: task_catalog/datasets)")
    parser.add_argument("--templates", help="templates directory (default: templates/)")
    sub = parser.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="run the Beam job; unknown flags are Beam PipelineOptions (e.g. --runner)",
                       allow_abbrev=False)  # an abbreviation must never swallow a Beam flag
    b.add_argument("--mixture", required=True, help="mixture name (task_catalog/mixtures/NAME.yaml) or a path")
    b.add_argument("--output", required=True, help="output directory (local, gs:// or s3://)")
    b.add_argument("--seed", type=int, help="sampling and template-choice seed, >= 0 (default: the mixture's `seed`, else 0)")
    b.add_argument("--num_shards", type=int, help="number of output shards (default: from source size)")
    b.add_argument("--vocab", help="SentencePiece model (local or gs://); default: the shipped demo model")
    b.add_argument("--inputs_length", type=int,
                   help="inputs tokens per row, >= 8 (default: the mixture's sequence_length.inputs, else 2048)")
    b.add_argument("--targets_length", type=int,
                   help="targets tokens per row, >= 4 (default: the mixture's sequence_length.targets, else 512)")
    b.add_argument("--overlong", choices=["truncate", "drop"], help="policy for examples longer than the lengths (default: the mixture's `overlong`, else truncate)")
    b.add_argument("--layout", choices=["encdec", "decoder"], default="encdec",
                   help="encdec: inputs and targets rows (T5); decoder: inputs+targets in one row with a loss mask "
                        "(schemas/packed_<layout>.features.json; default encdec)")
    b.add_argument("--decoder_length", type=int,
                   help="--layout decoder: the row length (default inputs_length + targets_length, 2560)")
    b.add_argument("--format", choices=["packed", "jsonl"], default="packed",
                   help="packed: TFRecord + Parquet rows (default); jsonl: the rendered text with metadata, unpacked")
    b.add_argument("--formats", default=None, metavar="tfrecord,parquet",
                   help="the packed output's files: tfrecord, parquet or both, comma-separated (default both); "
                        "writing one takes about half the write stage's time")
    b.add_argument("--pack_buffer", type=int,
                   help="examples the packer sorts and places at a time; bounds its memory (default 10000)")
    b.add_argument("--target_examples", type=int, help="corpus size in examples (default: the mixture's target, else one pass over the capped tasks)")
    b.add_argument("--target_tokens", type=int,
                   help="corpus size in tokens, inputs + targets, estimated per task (default: the mixture's target)")
    b.add_argument("--strict", action="store_true",
                   help="fail before starting if any source cannot be loaded (default: skip it and renormalise)")
    b.add_argument("--overwrite", action="store_true", help="replace a complete corpus already at --output")
    b.add_argument("--versioned", action="store_true",
                   help="publish to OUTPUT/MIXTURE/vN (N: one more than the newest complete version)")
    b.add_argument("--dry-run", action="store_true",
                   help="print the resolved plan (datasets, templates, expected rows, runner, output layout); run nothing")
    b.add_argument("--dataflow-check", action="store_true",
                   help="build the job for DataflowRunner offline (Beam --dry_run) and check container, pickling, options")
    b.add_argument("--worker_start_timeout", type=float, default=300.0, metavar="SECONDS",
                   help="portable runners with separate workers (--environment_type EXTERNAL, PROCESS, DOCKER): fail "
                        "when a one-element probe job has not finished within this many seconds, instead of waiting "
                        "forever for workers that cannot start (default 300; 0: no probe)")
    b.add_argument("--progress", type=float, default=5.0, metavar="SECONDS",
                   help="print the job's counters at most this often (default 5; 0: only the final summary)")
    render_budget.add_flags(b)
    b.add_argument("--cache", metavar="DIR",
                   help="keep each source file's (few-shot tasks: each exemplar group's) tokenized examples in DIR "
                        "(local, gs:// or s3://) and reuse them "
                        "when nothing they depend on changed (default: off; README \"Incremental rebuilds\")")
    b.add_argument("--max_dead_letter_fraction", type=float, metavar="F",
                   help="fail (exit non-zero, publish nothing) when a dataset's or the build's dead letters exceed "
                        "this share of its rows tried (default: fail only when a dataset loses every row)")

    b.add_argument("--sources", metavar="DIR|gs://...|s3://...",
                   help="read every source from this snapshot (`flanmix sources snapshot`), each file checked by "
                        "SHA-256; no Hub, TFDS or source files are read (default: each entry's own loader)")

    so = sub.add_parser("sources", help="pin a mixture's sources in a snapshot, verify one, compare two")
    sosub = so.add_subparsers(dest="sources_cmd", required=True)
    ss = sosub.add_parser("snapshot", help="a Beam job reading every source of a mixture through its loader into "
                                           "Parquet + sources.json; unknown flags are Beam options", allow_abbrev=False)
    ss.add_argument("--mixture", required=True, help="mixture name (task_catalog/mixtures/NAME.yaml) or a path")
    ss.add_argument("--to", required=True, help="snapshot directory (local, gs:// or s3://); a re-run fetches only "
                                                "sources that are missing or changed")
    ss.add_argument("--strict", action="store_true",
                    help="fail, writing nothing, if any source cannot be fetched (default: record its reason, fetch the rest)")
    ss.add_argument("--progress", type=float, default=0.0, metavar="SECONDS",
                    help="print the job's counters at most this often (default 0: only the summary)")
    sv = sosub.add_parser("verify", help="re-hash every file of a snapshot; non-zero exit naming each bad file")
    sv.add_argument("dir", help="snapshot directory holding sources.json (local, gs:// or s3://)")
    sd = sosub.add_parser("diff", help="which sources differ between two snapshots: rows added/removed/changed, fields")
    sd.add_argument("a", help="the older snapshot")
    sd.add_argument("b", help="the newer snapshot")
    sd.add_argument("--all", action="store_true", help="also list unchanged sources (default: only those that differ)")
    sd.add_argument("--exit-code", action="store_true", help="exit 1 when any source differs (default: 0)")

    cd = sub.add_parser("card", help="write the data card (README.md + card/*.png) of a published corpus from its "
                                     "manifest; unknown flags are Beam options (e.g. --s3_endpoint_url)")
    cd.add_argument("dir", help="corpus directory holding manifest.json (local, gs:// or s3://)")
    ins = sub.add_parser("inspect", help="decode packed rows to text, segment by segment, with provenance; unknown "
                                         "flags are Beam options")
    ins.add_argument("dir", help="corpus directory holding manifest.json (local, gs:// or s3://)")
    ins.add_argument("--row", type=int, help="first row to show (0-based over the shards in order; default 0)")
    ins.add_argument("--dataset", help="show the first -n examples of this dataset instead (default: none, rows from the start)")
    ins.add_argument("-n", type=int, default=1, help="rows to show (with --dataset: examples; default 1)")
    ins.add_argument("--from", dest="source", choices=["parquet", "tfrecord"], default="parquet",
                     help="which shards to read (default parquet)")
    ins.add_argument("--vocab", help="SentencePiece model to decode with (default: the manifest's, checked by SHA-256)")
    ins.add_argument("--json", action="store_true", help="one JSON object per segment instead of text")

    c = sub.add_parser("catalog", help="inspect the task catalog")
    csub = c.add_subparsers(dest="catalog_cmd", required=True)
    cl = csub.add_parser("list")
    cl.add_argument("--collection", help="flan2021, t0, niv2, cot, dialog, program_synthesis or user (default: all)")
    cl.add_argument("--category", help="a task category, e.g. \"Question Answering\" (case-insensitive; default: all)")
    cs = csub.add_parser("show")
    cs.add_argument("name", help="a dataset name, as `catalog list` shows it")
    cst = csub.add_parser("stats", help="datasets, tasks and categories per collection and in total")
    cst.add_argument("--json", action="store_true", help="print JSON instead of a table")

    t = sub.add_parser("templates", help="check and preview templates")
    tsub = t.add_subparsers(dest="templates_cmd", required=True)
    tl = tsub.add_parser("lint", help="parse, check fields, render on real rows; non-zero exit on any problem")
    tl.add_argument("--rows", type=int, default=3,
                    help="real rows per locally readable dataset to render with every template besides its fixture rows; small local "
                         "sources are also read in full, one template per row (0: static checks only; default 3)")
    tl.add_argument("--no-source", action="store_true", help="render fixture rows only; read no source data")
    render_budget.add_flags(tl)
    tp = tsub.add_parser("preview", help="render rows of a dataset (its fixture rows when the source is unavailable)")
    tp.add_argument("dataset", help="a dataset name, as `catalog list` shows it")
    tp.add_argument("-n", type=int, default=3, help="rows to render (default 3)")
    tp.add_argument("--template", help="only this template id (default: the dataset's templates in turn)")
    tp.add_argument("--fixtures", action="store_true", help="use the entry's fixture rows; do not read the source")
    tp.add_argument("--setting", choices=["zs_opt", "zs_noopt", "fs_opt", "fs_noopt"],
                    help="show what the build makes for this prompt setting: option formats, few-shot exemplars "
                         "from the other preview rows (fixture or first source rows); default: none, the plain "
                         "preview of each template in turn")
    render_budget.add_flags(tp)
    ti = tsub.add_parser("import-promptsource", help="convert a promptsource templates.yaml into a template family")
    ti.add_argument("path", help="a promptsource templates.yaml")
    ti.add_argument("--family", help="family name (default: ps_<dataset>_<subset>)")
    ti.add_argument("--output", help="directory to write <family>.yaml into (default: --templates or templates/)")
    ti.add_argument("--force", action="store_true", help="replace an existing family file")

    m = sub.add_parser("mixtures", help="list mixtures, show a mixture's resolved plan")
    msub = m.add_subparsers(dest="mixtures_cmd", required=True)
    msub.add_parser("list")
    ms = msub.add_parser("show", help="every task with its effective weight and expected example count")
    ms.add_argument("name", help="mixture name (task_catalog/mixtures/NAME.yaml) or a path")
    ms.add_argument("--no-count", dest="count", action="store_false",
                    help="do not read sources to count rows (use catalog sizes, else assume the cap)")
    ms.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ms.add_argument("--verbose", action="store_true",
                    help="list every source not readable here with its reason (default: one summary line per reason)")

    v = sub.add_parser("vocab", help="the default SentencePiece vocabulary")
    vsub = v.add_subparsers(dest="vocab_cmd", required=True)
    vt = vsub.add_parser("train", help="train a T5-convention model from a mixture's rows and templates")
    vt.add_argument("--mixture", default="demo", help="whose datasets and templates to learn from (default: demo)")
    vt.add_argument("--output", required=True, help="model prefix; writes PREFIX.model")
    vt.add_argument("--vocab_size", type=int, default=8000, help="pieces in the model (default 8000)")
    vt.add_argument("--whitespace", choices=("keep", "collapse"), default="keep",
                    help="keep newlines, tabs and repeated spaces as written (default, lossless), or collapse them "
                         "into single spaces as T5's vocabularies do")
    from trainer.cli import add_parsers  # train, export, eval: flags only; JAX loads when one runs

    add_parsers(sub)
    return parser


BUILD_FLAGS: set[str] = set()  # flanmix's own flags of `build`, for suggestions next to Beam's


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `flanmix ... | head` ends quietly
    parser = make_parser()
    BUILD_FLAGS.update(o for a in parser._actions for o in a.option_strings)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            BUILD_FLAGS.update(o for a in action.choices["build"]._actions for o in a.option_strings)
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd not in ("build", "card", "inspect", "sources"):  # these take Beam (filesystem) options
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if hasattr(args, "render_max_operations"):
            try:
                render_budget.configure(render_budget.from_flags(args))
            except ValueError as exc:
                raise FlanmixError(str(exc).replace("render budget ", "--render_")) from None
        if args.cmd == "build":
            return cmd_build(args, rest)
        if args.cmd == "card":
            return cmd_card(args, rest)
        if args.cmd == "sources":
            return cmd_sources(args, rest)
        if args.cmd == "inspect":
            return cmd_inspect(args, rest)
        if args.cmd in ("train", "export", "eval"):
            from trainer.cli import dispatch

            return dispatch(args)
        if args.cmd == "catalog":
            return cmd_catalog(args)
        if args.cmd == "templates":
            return cmd_templates(args)
        if args.cmd == "vocab":
            return cmd_vocab(args)
        if args.cmd == "mixtures":
            return cmd_mixtures(args)
    except FlanmixError as exc:
        print(f"flanmix: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
