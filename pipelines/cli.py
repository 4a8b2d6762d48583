"""`flanmix` command line. Flags live only here; everything else takes explicit arguments.

    flanmix build --mixture demo --output out/demo [--seed N] [--num_shards N] [--vocab PATH] [Beam options]
    flanmix catalog list | show NAME
    flanmix templates lint | preview DATASET -n 3
    flanmix vocab train --output PREFIX
"""
from __future__ import annotations

import argparse
import itertools
import json
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
    )
    print(f"flanmix build: mixture {plan.mixture}, {len(plan.datasets)} datasets, {len(plan.sources)} source files, "
          f"{plan.num_shards} output shard(s), lengths {plan.inputs_length}/{plan.targets_length}, seed {plan.seed}")
    start = time.perf_counter()
    run_build(plan, vocab.model_proto, args.output, beam_args)
    wall = time.perf_counter() - start
    print_summary(read_manifest(args.output), args.output, wall)
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
    eff = manifest["packing_efficiency"]
    print(f"\n{manifest['num_rows']} packed rows in {manifest['num_shards']} shard(s); packing efficiency "
          f"inputs {eff['inputs']:.3f}, targets {eff['targets']:.3f}; dead letters {manifest['dead_letter']['count']}")
    print(f"output: {output} (manifest.json, tfrecord/, parquet/, dead_letter/)" + (f"; wall {wall:.1f}s" if wall else ""))


# --- catalog -------------------------------------------------------------------------------------

def cmd_catalog(args) -> int:
    from pipelines.catalog import load_catalog

    catalog = load_catalog(args.catalog)
    if args.catalog_cmd == "list":
        for e in catalog:
            if args.collection and args.collection not in e.collections:
                continue
            if args.category and args.category not in e.task_categories:
                continue
            print(f"{e.name:56} {','.join(e.collections):10} {e.loader_type:10} {'; '.join(e.task_categories)}")
        return 0
    entry = catalog[args.name]
    print(open(entry.source_path, encoding="utf-8").read().rstrip())
    return 0


# --- templates -----------------------------------------------------------------------------------

def cmd_templates(args) -> int:
    from pipelines.lint import lint_catalog, lint_render

    catalog, families = _load_catalog_and_templates(args)
    if args.templates_cmd == "lint":
        problems = lint_catalog(catalog, families, render_rows=args.rows)
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        n_templates = sum(len(f.templates) for f in families.values())
        if problems:
            print(f"templates lint: {len(problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"templates lint: OK ({len(families)} families, {n_templates} templates, {len(catalog)} datasets)")
        return 0
    return preview(catalog, families, args.dataset, args.n, args.template)


def preview(catalog, families, dataset: str, n: int, template_id: str | None) -> int:
    from pipelines.fieldtypes import field_problem
    from pipelines.loaders import get_loader
    from pipelines.templates import compile_template, render
    from pipelines.errors import RenderError

    entry = catalog[dataset]
    split = next(iter(entry.splits))
    loader = get_loader(entry.loader_type)
    shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
    rows = list(itertools.islice((r for s in shards for r in loader.read(s)), n))
    templates = [t for fam in entry.templates for t in families[fam].templates]
    if template_id:
        templates = [t for t in templates if t.id == template_id]
        if not templates:
            raise FlanmixError(f"dataset {dataset} has no template {template_id!r}")
    for i, row in enumerate(rows):
        t = templates[i % len(templates)]
        print(f"=== {dataset} row {row.row_id} | template {t.id} ({t.prompt_setting}{', cot' if t.cot else ''})")
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

    b = sub.add_parser("build", help="run the Beam job; unknown flags are Beam PipelineOptions (e.g. --runner)")
    b.add_argument("--mixture", required=True, help="mixture name (task_catalog/mixtures/NAME.yaml) or a path")
    b.add_argument("--output", required=True, help="output directory (local, gs:// or s3://)")
    b.add_argument("--seed", type=int, help="overrides the mixture's seed")
    b.add_argument("--num_shards", type=int, help="number of output shards (default: from source size)")
    b.add_argument("--vocab", help="SentencePiece model (local or gs://); default: the shipped demo model")
    b.add_argument("--inputs_length", type=int)
    b.add_argument("--targets_length", type=int)
    b.add_argument("--overlong", choices=["truncate", "drop"], help="policy for examples longer than the lengths")

    c = sub.add_parser("catalog", help="inspect the task catalog")
    csub = c.add_subparsers(dest="catalog_cmd", required=True)
    cl = csub.add_parser("list")
    cl.add_argument("--collection")
    cl.add_argument("--category")
    cs = csub.add_parser("show")
    cs.add_argument("name")

    t = sub.add_parser("templates", help="check and preview templates")
    tsub = t.add_subparsers(dest="templates_cmd", required=True)
    tl = tsub.add_parser("lint", help="parse, check fields, render on real rows; non-zero exit on any problem")
    tl.add_argument("--rows", type=int, default=3, help="rows per dataset to render (0: static checks only)")
    tp = tsub.add_parser("preview", help="render real rows of a dataset")
    tp.add_argument("dataset")
    tp.add_argument("-n", type=int, default=3)
    tp.add_argument("--template", help="only this template id")

    v = sub.add_parser("vocab", help="the default SentencePiece vocabulary")
    vsub = v.add_subparsers(dest="vocab_cmd", required=True)
    vt = vsub.add_parser("train", help="train a T5-convention model from a mixture's rows and templates")
    vt.add_argument("--mixture", default="demo", help="whose datasets and templates to learn from (default: demo)")
    vt.add_argument("--output", required=True, help="model prefix; writes PREFIX.model")
    vt.add_argument("--vocab_size", type=int, default=8000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.cmd != "build":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.cmd == "build":
            return cmd_build(args, rest)
        if args.cmd == "catalog":
            return cmd_catalog(args)
        if args.cmd == "templates":
            return cmd_templates(args)
        if args.cmd == "vocab":
            return cmd_vocab(args)
    except FlanmixError as exc:
        print(f"flanmix: error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
