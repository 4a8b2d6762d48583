"""Incremental rebuilds with `--cache`: cold vs warm vs one template changed, on the Flan CoT data.

    python benchmarks/cache.py [--cot_dir DIR] [--runs 3] [--few_shot] [Beam flags...]

The 7 Flan CoT training TSVs (33,443 examples; default ../shared/data/flan/cot beside the checkout)
as 7 datasets, lengths 2048/512, with the templates `cot_qa` and `cot_inversion` shared by all
seven plus one family of their own per dataset (`bench_<dataset>`, one template), so that changing
one template concerns one dataset. Each run measures, in fresh processes (wall time of make_plan +
the Beam job + publish, without interpreter start-up and imports; the card's plots drawn in helper
processes started as `flanmix build` starts them):

    cold     no --cache: the baseline every other line is divided by
    fill     --cache into an empty folder (cold plus writing the entries)
    warm     the same build again with the filled cache: the whole corpus is replayed, no job runs
    per_file the same build with only the per-file entries (the corpus entries deleted): the job
             runs, every source file is a hit, nothing is read, rendered or tokenized
    changed  `bench_cot_gsm8k`'s template edited (a new text each run): only cot_gsm8k misses

`--few_shot` asks for half few-shot prompts (benchmarks/throughput.py's FEW_SHOT): every task then has
exemplar groups, which the per-file layer does not serve but the task and group layers do
(`pipelines.cache.stage`): per_file replays every task from its index without reading a row, and
changed reads and groups cot_gsm8k's rows again and renders and tokenizes its groups.

The script checks that fill, warm and per_file publish the same bytes as cold (every file but manifest.json, whose
`cache` section differs, and the manifest without it). Prints medians and `ratio warm/cold`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import DEFAULT_COT, make_catalog  # noqa: E402

FAMILY = """schema_version: 1
family: bench_{name}
description: A template of {name}'s own, so that the benchmark can change one template.
templates:
  - id: bench_{name}_q
    shots: zero_shot
    options: false
    cot: true
    inputs: |-
      {text}
      {{{{ question }}}}
    targets: "{{{{ rationale }}}} So the answer is {{{{ answer }}}}."
"""
CHANGED = "cot_gsm8k"


def prepare(cot_dir: Path, work: Path, few_shot: bool = False) -> tuple[Path, Path, Path, list[str]]:
    catalog, mixture = make_catalog(cot_dir, work, few_shot=few_shot)
    templates = work / "templates"
    shutil.copytree(ROOT / "templates", templates)
    names = sorted(p.stem for p in catalog.glob("*.yaml"))
    for name in names:
        entry = catalog / f"{name}.yaml"
        entry.write_text(entry.read_text().replace("templates: [cot_qa, cot_inversion]",
                                                   f"templates: [cot_qa, cot_inversion, bench_{name}]"))
        write_family(templates, name, "Answer the question.")
    return catalog, mixture, templates, names


def write_family(templates: Path, name: str, text: str) -> None:
    (templates / f"bench_{name}.yaml").write_text(FAMILY.format(name=name, text=text))


def run_build(catalog_dir: str, mixture: str, templates: str, out: str, cache: str, beam_args: list[str]) -> dict:
    t_import = time.perf_counter()
    from pipelines import resources
    from pipelines.definitions.catalog import load_catalog
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.definitions.templates import load_templates
    from pipelines.planning.plan import BuildOptions, make_plan
    from pipelines.runner.graph import run_build as beam_build
    from pipelines.vocab import Vocabulary
    from flanmix_corpus.reader import read_manifest

    start = time.perf_counter()
    imports = start - t_import
    vocab = Vocabulary.load(resources.default_vocab_path())
    plan = make_plan(load_mixture(mixture), load_catalog(catalog_dir), load_templates(templates), vocab,
                     BuildOptions(cache=cache or None))
    beam_build(plan, vocab.model_proto, out, beam_args, all_cores=True)
    wall = time.perf_counter() - start
    m = read_manifest(out)
    return {"wall": wall, "startup": imports, "examples": m["num_examples"], "cache": m.get("cache")}


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--_build", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        sys.exit(f"build failed ({' '.join(args[3:5])}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def corpus_digest(out: Path) -> dict:
    """Every published file's SHA-256; manifest.json without its `cache` section."""
    digest = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(out.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("cache", None)
    digest["manifest.json"] = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cot_dir", type=Path, default=DEFAULT_COT)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--few_shot", action="store_true", help="half few-shot prompts: exemplar groups in every task")
    parser.add_argument("--_build", nargs=5, help=argparse.SUPPRESS)
    args, beam_args = parser.parse_known_args()
    if args._build:
        print(json.dumps(run_build(*args._build, beam_args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        catalog, mixture, templates, names = prepare(args.cot_dir, work, args.few_shot)
        common = (str(catalog), str(mixture), str(templates))
        print(f"data: {args.cot_dir}, {len(names)} datasets, few-shot: {args.few_shot}, cores: {os.cpu_count()}, "
              f"build options: {beam_args or '(defaults)'}")
        walls: dict[str, list[float]] = {k: [] for k in ("cold", "fill", "warm", "per_file", "changed")}
        for run in range(args.runs):
            write_family(templates, CHANGED, "Answer the question.")
            cache = work / f"cache{run}"
            outs = {k: work / f"{k}{run}" for k in walls}
            results = {
                "cold": child(*common, str(outs["cold"]), "", *beam_args),
                "fill": child(*common, str(outs["fill"]), str(cache), *beam_args),
                "warm": child(*common, str(outs["warm"]), str(cache), *beam_args),
            }
            shutil.rmtree(cache / "v1" / "corpus")
            results["per_file"] = child(*common, str(outs["per_file"]), str(cache), *beam_args)
            write_family(templates, CHANGED, f"Answer the question (edit {run}).")
            results["changed"] = child(*common, str(outs["changed"]), str(cache), *beam_args)
            cold = corpus_digest(outs["cold"])
            same = {k: corpus_digest(outs[k]) == cold for k in ("fill", "warm", "per_file")}
            for kind, r in results.items():
                walls[kind].append(r["wall"])
                c = r["cache"] or {}
                missed = sorted(n for n, d in (c.get("datasets") or {}).items() if d["misses"] or d.get("group_misses"))
                print(f"run {run} {kind:8} wall {r['wall']:6.2f}s  examples {r['examples']}  "
                      f"hits {c.get('hits', '-')} misses {c.get('misses', '-')} uncacheable {c.get('uncacheable', '-')}"
                      f" task hits {c.get('task_hits', '-')} misses {c.get('task_misses', '-')}"
                      f" group hits {c.get('group_hits', '-')} misses {c.get('group_misses', '-')}"
                      + (f" ({', '.join(missed)})" if kind == "changed" else "")
                      + (f"  identical to cold: {same[kind]}" if kind in same else ""))
            if not all(same.values()):
                sys.exit("a cached build differs from the cold build")
            for out in outs.values():
                shutil.rmtree(out)
        med = {k: statistics.median(v) for k, v in walls.items()}
        for k, v in med.items():
            print(f"median {k:8} wall {v:6.2f}s  ({v / med['cold']:.1%} of cold)")
        print(f"ratio warm/cold: {med['warm'] / med['cold']:.3f}  changed/cold: {med['changed'] / med['cold']:.3f}  "
              f"per_file/cold: {med['per_file'] / med['cold']:.3f}  fill/cold: {med['fill'] / med['cold']:.3f}")


if __name__ == "__main__":
    main()
