"""`flanmix` command line. Flags live only here; everything else takes explicit arguments.

    flanmix build --mixture demo --output out/demo [--seed N] [--num_shards N] [--vocab PATH] [Beam options]
                  [--overwrite] [--versioned] [--dry-run] [--dataflow-check] [--progress SECONDS]
                  [--layout encdec|decoder] [--decoder_length N] [--format packed|jsonl] [--pack_buffer N]
    flanmix catalog list [--collection C] [--category "Question Answering"] | show NAME | stats [--json]
    flanmix templates lint [--rows N] [--no-source] | preview DATASET -n 3 [--fixtures]
    flanmix templates import-promptsource PATH [--family NAME] [--output DIR]
    flanmix vocab train --output PREFIX
    flanmix train --corpus out/demo --model tiny --steps 50 --out ckpt/   (see trainer/)
"""
from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import time
from typing import Sequence

from pipelines import resources
from pipelines.errors import FlanmixError


def _load_catalog_and_templates(args):
    from pipelines.catalog import load_catalog
    from pipelines.templates import load_templates

    return load_catalog(args.catalog), load_templates(args.templates)


# --- build ---------------------------------------------------------------------------------------

def cmd_build(args, beam_args: list[str]) -> int:
    from pipelines import build, progress, publish
    from pipelines.build import run_build
    from pipelines.manifest import read_manifest
    from pipelines.mixtures import load_mixture
    from pipelines.plan import make_plan
    from pipelines.vocab import Vocabulary

    catalog, families = _load_catalog_and_templates(args)
    mixture = load_mixture(args.mixture)
    vocab = Vocabulary.load(args.vocab or resources.default_vocab_path())
    plan = make_plan(
        mixture, catalog, families, vocab, seed=args.seed, num_shards=args.num_shards,
        inputs_length=args.inputs_length, targets_length=args.targets_length, overlong=args.overlong,
        target_examples=args.target_examples, strict=args.strict, target_tokens=args.target_tokens,
        layout=args.layout, decoder_length=args.decoder_length, output_format=args.format, pack_buffer=args.pack_buffer,
    )
    for name, reason in plan.skipped[:10]:
        print(f"flanmix build: skipping {name}: {reason}")
    if len(plan.skipped) > 10:
        print(f"flanmix build: ... and {len(plan.skipped) - 10} more sources skipped (all listed in the manifest)")
    print(f"flanmix build: mixture {plan.mixture}, {len(plan.datasets)} datasets, {len(plan.sources)} source files, "
          f"{plan.num_shards} output shard(s), lengths {plan.inputs_length}/{plan.targets_length}, seed {plan.seed}")
    if args.dataflow_check:
        from pipelines.dataflow import check_job

        print(check_job(plan, vocab.model_proto, args.output, beam_args).format())
        return 0
    build.set_filesystem_options(beam_args)
    progress.quiet_known_beam_noise()
    output = publish.resolve_output(args.output, plan.mixture, args.versioned)
    if args.dry_run:
        print(build.describe(plan, output, beam_args, args.overwrite))
        return 0
    problems = build.remote_problems(plan, output, beam_args)
    if problems and build.runner_name(beam_args) == "DataflowRunner":
        raise FlanmixError("Dataflow workers cannot run this build:\n  " + "\n  ".join(problems))
    for problem in problems:  # other engines' workers may share a filesystem with the launcher
        print(f"flanmix build: WARNING: {problem}")
    start = time.perf_counter()
    run_build(plan, vocab.model_proto, output, beam_args, overwrite=args.overwrite, all_cores=True,
              progress_every=args.progress)
    wall = time.perf_counter() - start
    if build._has(beam_args, "template_location"):
        print(f"flanmix build: Dataflow template written to {build._flag(beam_args, 'template_location')}")
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
    data_dirs = "jsonl/" if manifest.get("format") == "jsonl" else "tfrecord/, parquet/"
    print(f"output: {output} (manifest.json, {data_dirs}, dead_letter/)" + (f"; wall {wall:.1f}s" if wall else ""))


# --- catalog -------------------------------------------------------------------------------------

def cmd_catalog(args) -> int:
    from pipelines.catalog import load_catalog

    catalog = load_catalog(args.catalog)
    if args.catalog_cmd == "list":
        for e in catalog.filter(args.collection, args.category):
            print(f"{e.name:56} {','.join(e.collections):10} {e.loader_type:10} {'; '.join(e.task_categories)}")
        return 0
    if args.catalog_cmd == "stats":
        from pipelines.catalog_stats import catalog_stats, format_stats

        stats = catalog_stats(catalog)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return 0
    entry = catalog[args.name]
    print(open(entry.source_path, encoding="utf-8").read().rstrip())
    return 0


# --- templates -----------------------------------------------------------------------------------

def cmd_templates(args) -> int:
    from pipelines.lint import lint_catalog

    if args.templates_cmd == "import-promptsource":
        return import_promptsource(args)
    catalog, families = _load_catalog_and_templates(args)
    if args.templates_cmd == "lint":
        problems = lint_catalog(catalog, families, render_rows=args.rows, read_source=not args.no_source)
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        n_templates = sum(len(f.templates) for f in families.values())
        if problems:
            print(f"templates lint: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"templates lint: OK ({len(families)} families, {n_templates} templates, {len(catalog)} datasets)")
        return 0
    return preview(catalog, families, args.dataset, args.n, args.template, args.fixtures)


def import_promptsource(args) -> int:
    from pipelines.promptsource_import import import_file

    out_dir = args.output or args.templates or str(resources.templates_dir())
    path, family, skipped = import_file(args.path, out_dir, args.family, args.force)
    for reason in skipped:
        print(f"skipped {reason}", file=sys.stderr)
    print(f"wrote {path}: family {family['family']}, {len(family['templates'])} template(s); name it in a "
          f"catalog entry's `templates:` and run `flanmix templates lint`")
    return 0


def preview_rows(entry, n: int, use_fixtures: bool):
    """(rows, note): the first `n` source rows, or the entry's fixture rows when the source cannot be
    read here (or `use_fixtures`)."""
    from pipelines.catalog import fixture_rows
    from pipelines.loaders import get_loader

    if not use_fixtures:
        split = next(iter(entry.splits))
        loader = get_loader(entry.loader_type)
        try:
            shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
            return list(itertools.islice((r for s in shards for r in loader.read(s)), n)), None
        except FlanmixError as exc:
            note = f"source unavailable ({exc}); showing the entry's fixture rows instead"
    else:
        note = "showing the entry's fixture rows (--fixtures)"
    rows = fixture_rows(entry)[:n]
    if not rows:
        raise FlanmixError(f"dataset {entry.name}: source unavailable and the entry has no fixture rows")
    return rows, note


def preview(catalog, families, dataset: str, n: int, template_id: str | None, use_fixtures: bool = False) -> int:
    from pipelines.errors import RenderError
    from pipelines.fieldtypes import field_problem
    from pipelines.templates import bind_templates, compile_template, render

    entry = catalog[dataset]
    templates = list(bind_templates(entry.templates, families, entry.template_vars))
    if template_id:
        templates = [t for t in templates if t.id == template_id]
        if not templates:
            raise FlanmixError(f"dataset {dataset} has no template {template_id!r}")
    rows, note = preview_rows(entry, n, use_fixtures)
    if note:
        print(f"[{dataset}] {note}\n")
    count = n if note else len(rows)  # fixture rows are few: cycle them so n templates are shown
    for i in range(count):
        row, t = rows[i % len(rows)], templates[i % len(templates)]
        print(f"=== {dataset} row {row.row_id} | template {t.id} ({t.prompt_setting}{', cot' if t.cot else ''}{', inversion' if t.inversion else ''})")
        problem = row.error or field_problem(row.fields, entry.fields)
        if problem:
            print(f"[dead letter] {problem}\n")
            continue
        try:
            inputs, targets = render(compile_template(t), row.fields)
        except RenderError as exc:
            print(f"[dead letter] {exc}\n")
            continue
        print(f"--- inputs\n{inputs}\n--- targets\n{targets}\n")
    return 0


# --- mixtures ------------------------------------------------------------------------------------

def cmd_mixtures(args) -> int:
    import dataclasses

    from pipelines.catalog import load_catalog
    from pipelines.mixture_report import format_plan, plan_mixture
    from pipelines.mixtures import load_mixture, mixtures_dir

    if args.mixtures_cmd == "list":
        for path in sorted(mixtures_dir().glob("*.yaml")):
            m = load_mixture(path)
            print(f"{m.name:24} {m.description}")
        return 0
    mixture = load_mixture(args.name)
    rows, target, skipped = plan_mixture(mixture, load_catalog(args.catalog), count=args.count)
    if args.json:
        print(json.dumps({"mixture": mixture.name, "target_examples": target,
                          "tasks": [dataclasses.asdict(r) for r in rows],
                          "skipped": [{"dataset": n, "reason": r} for n, r in skipped]}, indent=2))
    else:
        print(format_plan(mixture, rows, target, skipped))
    return 0


# --- vocab ---------------------------------------------------------------------------------------

def cmd_vocab(args) -> int:
    from pipelines.loaders import get_loader
    from pipelines.vocab import Vocabulary, train_vocabulary

    from pipelines.mixtures import load_mixture, resolve_datasets

    catalog, families = _load_catalog_and_templates(args)
    entries = resolve_datasets(load_mixture(args.mixture), catalog)

    def texts():
        for fam_name in sorted({f for e in entries for f in e.templates}):
            for t in families[fam_name].templates:
                yield t.inputs
                yield t.targets
        for entry in entries:
            loader = get_loader(entry.loader_type)
            for split, source in sorted(entry.splits.items()):
                for shard in loader.plan(entry.name, split, source, entry.loader_args):
                    for row in loader.read(shard):
                        for value in (row.fields or {}).values():
                            if isinstance(value, str):
                                yield value
                            elif isinstance(value, list):
                                yield from (json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in value)

    path = train_vocabulary(texts(), args.output, vocab_size=args.vocab_size)
    vocab = Vocabulary.load(path)
    print(f"wrote {path}: {vocab.vocab_size} pieces, sha256 {vocab.spec.sha256}")
    return 0


# --- parser --------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flanmix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", help="catalog directory (default: task_catalog/datasets)")
    parser.add_argument("--templates", help="templates directory (default: templates/)")
    sub = parser.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="run the Beam job; unknown flags are Beam PipelineOptions (e.g. --runner)",
                       allow_abbrev=False)  # an abbreviation must never swallow a Beam flag
    b.add_argument("--mixture", required=True, help="mixture name (task_catalog/mixtures/NAME.yaml) or a path")
    b.add_argument("--output", required=True, help="output directory (local, gs:// or s3://)")
    b.add_argument("--seed", type=int, help="overrides the mixture's seed")
    b.add_argument("--num_shards", type=int, help="number of output shards (default: from source size)")
    b.add_argument("--vocab", help="SentencePiece model (local or gs://); default: the shipped demo model")
    b.add_argument("--inputs_length", type=int)
    b.add_argument("--targets_length", type=int)
    b.add_argument("--overlong", choices=["truncate", "drop"], help="policy for examples longer than the lengths")
    b.add_argument("--layout", choices=["encdec", "decoder"], default="encdec",
                   help="encdec: inputs and targets rows (T5); decoder: inputs+targets in one row with a loss mask "
                        "(schemas/packed_<layout>.features.json)")
    b.add_argument("--decoder_length", type=int,
                   help="--layout decoder: the row length (default inputs_length + targets_length, 2560)")
    b.add_argument("--format", choices=["packed", "jsonl"], default="packed",
                   help="packed: TFRecord + Parquet rows (default); jsonl: the rendered text with metadata, unpacked")
    b.add_argument("--pack_buffer", type=int,
                   help="examples the packer sorts and places at a time; bounds its memory (default 10000)")
    b.add_argument("--target_examples", type=int, help="corpus size in examples (overrides the mixture's target)")
    b.add_argument("--target_tokens", type=int,
                   help="corpus size in tokens, inputs + targets (overrides the mixture's target; estimated per task)")
    b.add_argument("--strict", action="store_true",
                   help="fail before starting if any source cannot be loaded (default: skip it and renormalise)")
    b.add_argument("--overwrite", action="store_true", help="replace a complete corpus already at --output")
    b.add_argument("--versioned", action="store_true",
                   help="publish to OUTPUT/MIXTURE/vN (N: one more than the newest complete version)")
    b.add_argument("--dry-run", action="store_true",
                   help="print the resolved plan (datasets, templates, expected rows, runner, output layout); run nothing")
    b.add_argument("--dataflow-check", action="store_true",
                   help="build the job for DataflowRunner offline (Beam --dry_run) and check container, pickling, options")
    b.add_argument("--progress", type=float, default=5.0, metavar="SECONDS",
                   help="print the job's counters at most this often (default 5; 0: only the final summary)")

    c = sub.add_parser("catalog", help="inspect the task catalog")
    csub = c.add_subparsers(dest="catalog_cmd", required=True)
    cl = csub.add_parser("list")
    cl.add_argument("--collection", help="flan2021, t0, niv2, cot, dialog or program_synthesis")
    cl.add_argument("--category", help="a task category, e.g. \"Question Answering\" (case-insensitive)")
    cs = csub.add_parser("show")
    cs.add_argument("name")
    cst = csub.add_parser("stats", help="datasets, tasks and categories per collection and in total")
    cst.add_argument("--json", action="store_true", help="print JSON instead of a table")

    t = sub.add_parser("templates", help="check and preview templates")
    tsub = t.add_subparsers(dest="templates_cmd", required=True)
    tl = tsub.add_parser("lint", help="parse, check fields, render on real rows; non-zero exit on any problem")
    tl.add_argument("--rows", type=int, default=3,
                    help="real rows per locally readable dataset to render besides its fixture rows (0: static checks only)")
    tl.add_argument("--no-source", action="store_true", help="render fixture rows only; read no source data")
    tp = tsub.add_parser("preview", help="render rows of a dataset (its fixture rows when the source is unavailable)")
    tp.add_argument("dataset")
    tp.add_argument("-n", type=int, default=3)
    tp.add_argument("--template", help="only this template id")
    tp.add_argument("--fixtures", action="store_true", help="use the entry's fixture rows; do not read the source")
    ti = tsub.add_parser("import-promptsource", help="convert a promptsource templates.yaml into a template family")
    ti.add_argument("path", help="a promptsource templates.yaml")
    ti.add_argument("--family", help="family name (default: ps_<dataset>_<subset>)")
    ti.add_argument("--output", help="directory to write <family>.yaml into (default: --templates or templates/)")
    ti.add_argument("--force", action="store_true", help="replace an existing family file")

    m = sub.add_parser("mixtures", help="list mixtures, show a mixture's resolved plan")
    msub = m.add_subparsers(dest="mixtures_cmd", required=True)
    msub.add_parser("list")
    ms = msub.add_parser("show", help="every task with its effective weight and expected example count")
    ms.add_argument("name")
    ms.add_argument("--no-count", dest="count", action="store_false",
                    help="do not read sources to count rows (use catalog sizes, else assume the cap)")
    ms.add_argument("--json", action="store_true")

    v = sub.add_parser("vocab", help="the default SentencePiece vocabulary")
    vsub = v.add_subparsers(dest="vocab_cmd", required=True)
    vt = vsub.add_parser("train", help="train a T5-convention model from a mixture's rows and templates")
    vt.add_argument("--mixture", default="demo", help="whose datasets and templates to learn from (default: demo)")
    vt.add_argument("--output", required=True, help="model prefix; writes PREFIX.model")
    vt.add_argument("--vocab_size", type=int, default=8000)
    from trainer.cli import add_parsers  # train, export, eval: flags only; JAX loads when one runs

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `flanmix ... | head` ends quietly
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "build":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.cmd == "build":
            return cmd_build(args, rest)
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
