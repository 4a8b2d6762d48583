"""Throughput of `flanmix build` against a single-process floor, on the Flan chain-of-thought data.

    python benchmarks/throughput.py [--cot_dir DIR] [--runs 3] [--few_shot] [--baseline CHECKOUT] [Beam flags]

DIR holds the 7 Flan CoT training TSVs (33,443 examples; default: ../shared/data/flan/cot beside the
checkout). Each run measures, in fresh processes:

1. floor: one Python process, no Beam: read the TSVs, render one template per example (same
   templates and keyed choice as the build), encode inputs and targets with SentencePiece (batched,
   all cores), write the ids as TFRecord;
2. build: the real `flanmix build` job (render, tokenize, pack 2048/512, TFRecord + Parquet +
   manifest) over the same 7 datasets with the local runner settings `flanmix build` picks (here
   one in-process worker: the sources are below the multi-processing threshold); Beam
   flags after the options override them, e.g. `--direct_running_mode=multi_processing
   --direct_num_workers=2`.

Both sides freeze the heap they start with (gc.freeze, see pipelines/startup_heap.py).

`--few_shot` builds half zero-shot, half few-shot (1-5 exemplars; from each task's whole split since
issue 14, `pipelines/planning/exemplars.py`) and prints the manifest's exemplar reuse (max / mean).
`--baseline CHECKOUT` also runs the same build with another flanmix checkout's code (e.g. the main
branch: `--baseline /path/to/main`), interleaved with this one's in every run, and prints
`ratio build/baseline` (median wall and CPU): the cost of a change measured in the same run.

With `--seqio`, each run also measures the reference path users know, seqio's Beam caching job
(`seqio.beam_utils.PreprocessTask` + `WriteExampleTfRecord`, as `seqio.scripts.cache_tasks_main`
runs it) on the same FnApiRunner: a registered seqio Task over the same TSVs that formats a prompt
with TensorFlow string ops, tokenizes with the same SentencePiece model and appends EOS (no packing,
no Parquet), and prints `ratio seqio/build`.

Wall times exclude interpreter start-up and imports, which are printed separately. Prints examples/s,
tokens/s, wall, CPU seconds and peak RSS per run, then medians; the last line is
`ratio build/floor: X.XX` (median).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COT = ROOT.parent / "shared" / "data" / "flan" / "cot"
NAMES = {"aqua": "stream_aqua", "qed": "stream_qed"}  # FLAN's task names: stream_ for these two, cot_ else

ENTRY = """schema_version: 1
name: {name}
collections: [cot]
task_categories: [Question Answering]
languages: [English]
loader: {{type: cot_tsv, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [cot_qa, cot_inversion]
"""


FEW_SHOT = "prompt_settings: {zs_noopt: 0.5, fs_noopt: 0.5}\nfew_shot: {min_exemplars: 1, max_exemplars: 5}\n"


def make_catalog(cot_dir: Path, work: Path, few_shot: bool = False) -> tuple[Path, Path]:
    files = sorted(cot_dir.glob("*_train.tsv"))
    if len(files) != 7:
        sys.exit(f"expected 7 *_train.tsv files in {cot_dir}, found {len(files)}")
    (work / "catalog").mkdir(parents=True)
    names = []
    for f in files:
        base = f.name.replace("_train.tsv", "")
        name = NAMES.get(base, f"cot_{base}")
        names.append(name)
        (work / "catalog" / f"{name}.yaml").write_text(ENTRY.format(name=name, path=f))
    mixture = work / "cot_full.yaml"
    mixture.write_text("schema_version: 1\nname: cot_full\nsequence_length: {inputs: 2048, targets: 512}\n"
                       + (FEW_SHOT if few_shot else "") + "members:\n"
                       + "".join(f"  - {{dataset: {n}}}\n" for n in names))
    return work / "catalog", mixture


def _usage() -> tuple[float, float]:
    """(CPU seconds of this process and its finished children, peak RSS MiB of either)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, max(me.ru_maxrss, kids.ru_maxrss) / 1024


def run_floor(catalog_dir: str, out: str) -> dict:
    t_import = time.perf_counter()
    from apache_beam.io.tfrecordio import _TFRecordUtil

    from pipelines import resources
    from pipelines.definitions.catalog import load_catalog
    from pipelines.planning.hashing import keyed_choice
    from pipelines.loaders import get_loader
    from pipelines.definitions.templates import bind_templates, compile_template, load_templates, render
    from flanmix_corpus.tf_example import serialize_example
    from pipelines.vocab import Vocabulary

    import gc

    gc.freeze()  # as the build does (pipelines.runner.startup_heap), so neither pays the collector for the imports
    cpu0, _ = _usage()
    start = time.perf_counter()
    imports = start - t_import
    catalog, families = load_catalog(catalog_dir), load_templates()
    vocab = Vocabulary.load(resources.default_vocab_path())
    inputs, targets = [], []
    for entry in catalog:
        compiled = [compile_template(t) for t in bind_templates(entry.templates, families, entry.template_vars)]
        loader = get_loader(entry.loader_type)
        for shard in loader.plan(entry.name, "train", "train", entry.loader_args):
            for row in loader.read(shard):
                if row.error is not None:  # the build dead-letters these; the floor skips them
                    continue
                t = compiled[keyed_choice(len(compiled), 0, "template", entry.name, row.row_id)]
                i, o = render(t, row.fields)
                inputs.append(i)
                targets.append(o)
    ids = vocab.encode_batch(inputs + targets, num_threads=os.cpu_count())
    n = len(inputs)
    tokens = 0
    with open(out, "wb") as handle:
        for k in range(n):
            a, b = ids[k][:2047] + [1], ids[n + k][:511] + [1]
            tokens += len(a) + len(b)
            _TFRecordUtil.write_record(handle, serialize_example({"inputs": a, "targets": b}))
    wall = time.perf_counter() - start
    cpu1, rss = _usage()
    return {"examples": n, "tokens": tokens, "wall": wall, "cpu": cpu1 - cpu0, "rss_mib": rss, "startup": imports}


def run_build(catalog_dir: str, mixture: str, out: str, beam_args: list[str]) -> dict:
    t_import = time.perf_counter()
    from pipelines import resources
    from pipelines.runner.graph import run_build as beam_build
    from pipelines.definitions.catalog import load_catalog
    from flanmix_corpus.reader import read_manifest
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.planning.plan import make_plan
    from pipelines.definitions.templates import load_templates
    from pipelines.vocab import Vocabulary

    cpu0, _ = _usage()
    start = time.perf_counter()
    imports = start - t_import
    vocab = Vocabulary.load(resources.default_vocab_path())
    plan = make_plan(load_mixture(mixture), load_catalog(catalog_dir), load_templates(), vocab)
    beam_build(plan, vocab.model_proto, out, beam_args, all_cores=True)  # the runner settings `flanmix build` picks
    wall = time.perf_counter() - start
    cpu1, rss = _usage()
    m = read_manifest(out)
    tokens = sum(d["inputs_tokens"] + d["targets_tokens"] for d in m["datasets"].values())
    reuse = ((m.get("mixing") or {}).get("few_shot") or {}).get("exemplar_reuse")  # since issue 14
    return {"examples": m["num_examples"], "tokens": tokens, "wall": wall, "cpu": cpu1 - cpu0, "rss_mib": rss,
            "startup": imports, "rows": m["num_rows"], "reuse": reuse and {k: reuse[k] for k in ("max", "mean", "rows")}}


def run_seqio(cot_dir: str, out: str) -> dict:
    """seqio's Beam cache job over the CoT TSVs (see the module doc)."""
    t_import = time.perf_counter()
    import apache_beam as beam
    import seqio
    import tensorflow as tf
    from apache_beam.options.pipeline_options import PipelineOptions
    from seqio import beam_utils

    from pipelines import resources

    cpu0, _ = _usage()
    start = time.perf_counter()
    imports = start - t_import
    files = sorted(str(f) for f in Path(cot_dir).glob("*_train.tsv"))
    vocab = seqio.SentencePieceVocabulary(str(resources.default_vocab_path()))

    def parse_and_format(ds):
        def one(line):
            question, answer, rationale = tf.io.decode_csv(line, [[""], [""], [""]], field_delim="\t", use_quote_delim=False)
            return {"inputs": tf.strings.join(["Answer the question, thinking step by step. ", question]),
                    "targets": tf.strings.join([rationale, " So the answer is ", answer, "."])}
        return ds.map(one, num_parallel_calls=tf.data.AUTOTUNE)

    features = {name: seqio.Feature(vocab, add_eos=True) for name in ("inputs", "targets")}
    task = seqio.TaskRegistry.add(
        "flanmix_throughput_cot", source=seqio.TextLineDataSource({"train": files}), output_features=features,
        preprocessors=[parse_and_format, seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
    )
    with beam.Pipeline(runner="FnApiRunner", options=PipelineOptions([])) as pipeline:
        _ = (pipeline
             | "PreprocessTask" >> beam_utils.PreprocessTask(task, "train", preprocessors_seed=0)
             | "Write" >> beam_utils.WriteExampleTfRecord(os.path.join(out, "cot.tfrecord"), num_shards=1))
    wall = time.perf_counter() - start
    cpu1, rss = _usage()
    examples = tokens = 0
    for path in Path(out).glob("cot.tfrecord*"):
        for record in tf.data.TFRecordDataset(str(path)):
            parsed = tf.train.Example.FromString(record.numpy()).features.feature
            examples += 1
            tokens += len(parsed["inputs"].int64_list.value) + len(parsed["targets"].int64_list.value)
    return {"examples": examples, "tokens": tokens, "wall": wall, "cpu": cpu1 - cpu0, "rss_mib": rss, "startup": imports}


def child(kind: str, *args: str, checkout: Path = ROOT) -> dict:
    """Run one measurement in a fresh process, with `checkout`'s code (its benchmarks/throughput.py)."""
    t0 = time.perf_counter()
    # the checkout's own code first, whatever the environment has installed
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, str(checkout / "benchmarks" / "throughput.py"), f"--_{kind}", *args],
                          capture_output=True, text=True, cwd=checkout, env=env)
    if proc.returncode != 0:
        sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall"] = time.perf_counter() - t0
    return result


def line(kind: str, r: dict) -> str:
    return (f"{kind:6} examples/s {r['examples'] / r['wall']:9.0f}  tokens/s {r['tokens'] / r['wall']:10.0f}  "
            f"wall {r['wall']:6.2f}s  cpu {r['cpu']:6.2f}s  peak RSS {r['rss_mib']:6.0f} MiB  "
            f"start-up+imports {r['startup']:.2f}s (process {r['process_wall']:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cot_dir", type=Path, default=DEFAULT_COT)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seqio", action="store_true", help="also measure seqio's Beam cache job (about 40 s a run)")
    parser.add_argument("--few_shot", action="store_true",
                        help="build half zero-shot, half few-shot (1-5 exemplars from each task's whole split)")
    parser.add_argument("--baseline", type=Path, help="another flanmix checkout whose build runs beside this one's")
    parser.add_argument("--_seqio", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_floor", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_build", nargs="+", help=argparse.SUPPRESS)
    args, beam_args = parser.parse_known_args()
    if args._floor:
        print(json.dumps(run_floor(*args._floor)))
        return
    if args._seqio:
        print(json.dumps(run_seqio(*args._seqio)))
        return
    if args._build:
        catalog_dir, mixture, out = args._build[:3]
        print(json.dumps(run_build(catalog_dir, mixture, out, beam_args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        catalog_dir, mixture = make_catalog(args.cot_dir, work, args.few_shot)
        print(f"data: {args.cot_dir} ({sum(1 for f in args.cot_dir.glob('*_train.tsv') for _ in open(f))} lines), "
              f"cores: {os.cpu_count()}, build options: {beam_args or '(defaults)'}")
        floors, builds, seqios, baselines = [], [], [], []
        for run in range(args.runs):
            floors.append(child("floor", str(catalog_dir), str(work / f"floor{run}.tfrecord")))
            print(line("floor", floors[-1]))
            builds.append(child("build", str(catalog_dir), str(mixture), str(work / f"build{run}"), *beam_args))
            reuse = builds[-1].get("reuse")
            print(line("build", builds[-1]) + f"  rows {builds[-1]['rows']}"
                  + (f"  exemplar reuse max {reuse['max']} mean {reuse['mean']}" if reuse else ""))
            if args.baseline:
                baselines.append(child("build", str(catalog_dir), str(mixture), str(work / f"baseline{run}"), *beam_args,
                                       checkout=args.baseline.resolve()))
                print(line("base", baselines[-1]) + f"  rows {baselines[-1]['rows']}")
            if args.seqio:
                seqios.append(child("seqio", str(args.cot_dir), str(work / f"seqio{run}")))
                print(line("seqio", seqios[-1]))
        med = {k: {f: statistics.median(r[f] for r in rs) for f in ("wall", "cpu", "rss_mib", "startup", "examples", "tokens")}
               for k, rs in (("floor", floors), ("build", builds), ("seqio", seqios), ("base", baselines)) if rs}
        for k in med:
            m = med[k]
            print(f"median {k:6} wall {m['wall']:.2f}s  examples/s {m['examples'] / m['wall']:.0f}  "
                  f"tokens/s {m['tokens'] / m['wall']:.0f}  cpu {m['cpu']:.2f}s  peak RSS {m['rss_mib']:.0f} MiB  "
                  f"start-up+imports {m['startup']:.2f}s")
        if seqios:
            print(f"ratio seqio/build: {med['seqio']['wall'] / med['build']['wall']:.2f}  "
                  f"(seqio/floor: {med['seqio']['wall'] / med['floor']['wall']:.2f})")
        if baselines:
            print(f"ratio build/baseline ({args.baseline}): wall {med['build']['wall'] / med['base']['wall']:.2f}  "
                  f"cpu {med['build']['cpu'] / med['base']['cpu']:.2f}")
        print(f"ratio build/floor: {med['build']['wall'] / med['floor']['wall']:.2f}")


if __name__ == "__main__":
    main()
