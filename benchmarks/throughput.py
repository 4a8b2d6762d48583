"""Throughput of `flanmix build` against a single-process floor, on the Flan chain-of-thought data.

    python benchmarks/throughput.py [--cot_dir DIR] [--runs 3] [--few_shot] [--baseline CHECKOUT] [--seqio] [Beam flags]
    python benchmarks/throughput.py --hf [--runs 3] [--repeat K] [--floor] [Beam flags]

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
`ratio build/baseline` (median wall and CPU): the cost of a change measured in the same run. Every
child process gets its checkout's code first on PYTHONPATH, whatever the environment has installed.
Both flags apply to the default mode (floor / build / seqio), not to `--hf`.

With `--seqio`, each run also measures the reference path users know, seqio's Beam caching job
(`seqio.beam_utils.PreprocessTask` + `WriteExampleTfRecord`, as `seqio.scripts.cache_tasks_main`
runs it) on the same FnApiRunner: a registered seqio Task over the same TSVs that formats a prompt
with TensorFlow string ops, tokenizes with the same SentencePiece model and appends EOS (no packing,
no Parquet), and prints `ratio seqio/build`.

With `--hf`, each round instead measures, interleaved and in fresh processes, the peer most users
would pick today, Hugging Face `datasets` followed by TRL's packer (`pip install -e .[bench]`; TRL goes
in without its dependencies, `pip install --no-deps -c constraints.txt trl`: `pack_dataset` needs
neither torch nor accelerate), against the flanmix build, all on ONE template
(`cot_qa_reason_then_answer`, the build's catalog entries name a one-template family) and the same
SentencePiece model:

    hf np=1 / np=2   load_dataset("csv") of the TSVs (tab, no quoting) -> map(batched=True, num_proc=N):
                     render with jinja2, encode with SentencePiece, `input_ids` = inputs EOS targets EOS
                     (cut to the row length) and `completion_mask` -> pack_dataset(strategy="bfd",
                     seq_length=2560) -> to_parquet; a fresh cache directory per run (a cold build)
    decoder parquet  flanmix build --layout decoder --decoder_length 2560 --formats parquet
    encdec both      flanmix build (encdec 2048/512, TFRecord + Parquet)

It prints the paired ratios (each round's flanmix wall over the same round's HF wall, then their
median) and checks that the token sequences match: every packed segment of the HF Parquet against the
decoder build's (`identical sequences: N of M`). `--repeat K` concatenates each TSV K times (the
334,430-example "data x10" run is `--repeat 10`).

Wall times exclude interpreter start-up and imports, which are printed separately. Prints examples/s,
tokens/s, wall, CPU seconds and peak RSS per run, then medians; the last line is
`ratio build/floor: X.XX` (median).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


BENCH_FAMILY = "cot_bench"
BENCH_TEMPLATE = "cot_qa_reason_then_answer"
DECODER_LENGTH = 2560
FEW_SHOT = "prompt_settings: {zs_noopt: 0.5, fs_noopt: 0.5}\nfew_shot: {min_exemplars: 1, max_exemplars: 5}\n"


def make_catalog(cot_dir: Path, work: Path, one_template: bool = False, repeat: int = 1,
                 few_shot: bool = False) -> tuple[Path, Path]:
    """A catalog of the 7 TSVs (each concatenated `repeat` times under `work/data`) and a mixture of all.
    `one_template`: the entries use a family holding only BENCH_TEMPLATE (written to work/templates).
    `few_shot`: the mixture renders half its examples few-shot (FEW_SHOT)."""
    files = sorted(cot_dir.glob("*_train.tsv"))
    if len(files) != 7:
        sys.exit(f"expected 7 *_train.tsv files in {cot_dir}, found {len(files)}")
    if repeat > 1:
        (work / "data").mkdir(parents=True)
        scaled = []
        for f in files:
            data = f.read_bytes()
            data = data if data.endswith(b"\n") else data + b"\n"
            (work / "data" / f.name).write_bytes(data * repeat)
            scaled.append(work / "data" / f.name)
        files = scaled
    (work / "catalog").mkdir(parents=True)
    entry = ENTRY
    if one_template:
        import yaml

        family = yaml.safe_load((ROOT / "templates" / "cot_qa.yaml").read_text(encoding="utf-8"))
        family["family"] = BENCH_FAMILY
        family["templates"] = [t for t in family["templates"] if t["id"] == BENCH_TEMPLATE]
        (work / "templates").mkdir(parents=True)
        (work / "templates" / f"{BENCH_FAMILY}.yaml").write_text(yaml.safe_dump(family, sort_keys=False))
        entry = ENTRY.replace("templates: [cot_qa, cot_inversion]", f"templates: [{BENCH_FAMILY}]")
    names = []
    for f in files:
        base = f.name.replace("_train.tsv", "")
        name = NAMES.get(base, f"cot_{base}")
        names.append(name)
        (work / "catalog" / f"{name}.yaml").write_text(entry.format(name=name, path=f))
    mixture = work / "cot_full.yaml"
    mixture.write_text("schema_version: 1\nname: cot_full\nsequence_length: {inputs: 2048, targets: 512}\n"
                       + (FEW_SHOT if few_shot else "") + "members:\n"
                       + "".join(f"  - {{dataset: {n}}}\n" for n in names))
    return work / "catalog", mixture


def _usage() -> tuple[float, float]:
    """(CPU seconds of this process and its finished children, peak RSS MiB of either)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, max(me.ru_maxrss, kids.ru_maxrss) / 1024


def run_floor(catalog_dir: str, out: str, templates: str | None = None) -> dict:
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
    catalog, families = load_catalog(catalog_dir), load_templates(templates)
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


def rss_anon(pid: int) -> int:
    """RssAnon of a process (heap: what grows with data; not mapped files or shared libraries), 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class AnonSampler:
    """Peak anonymous memory (RssAnon: heap, not mapped files or shared libraries) of this process and
    its children, sampled every 50 ms in a thread; what grows with the corpus if anything does."""

    def __init__(self):
        import threading

        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                pids = [me.pid] + [c.pid for c in me.children(recursive=True)]
            except psutil.Error:
                pids = [me.pid]
            self.peak = max(self.peak, sum(rss_anon(p) for p in pids))
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run_build(spec: dict, beam_args: list[str]) -> dict:
    """One flanmix build; `spec`: catalog, mixture, out, and optionally templates (a directory),
    layout, formats (`--formats`)."""
    t_import = time.perf_counter()
    from pipelines import resources
    from pipelines.runner.graph import run_build as beam_build
    from pipelines.definitions.catalog import load_catalog
    from flanmix_corpus.reader import read_manifest
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.planning.plan import BuildOptions, make_plan
    from pipelines.definitions.templates import load_templates
    from pipelines.vocab import Vocabulary

    sampler = AnonSampler()
    cpu0, _ = _usage()
    start = time.perf_counter()
    imports = start - t_import
    vocab = Vocabulary.load(resources.default_vocab_path())
    options = BuildOptions(layout=spec.get("layout", "encdec"),
                           decoder_length=DECODER_LENGTH if spec.get("layout") == "decoder" else None,
                           file_formats=spec.get("formats"))
    plan = make_plan(load_mixture(spec["mixture"]), load_catalog(spec["catalog"]), load_templates(spec.get("templates")),
                     vocab, options)
    beam_build(plan, vocab.model_proto, spec["out"], beam_args, all_cores=True)  # the runner settings `flanmix build` picks
    wall = time.perf_counter() - start
    cpu1, rss = _usage()
    anon = sampler.stop()
    m = read_manifest(spec["out"])
    tokens = sum(d["inputs_tokens"] + d["targets_tokens"] for d in m["datasets"].values())
    return {"examples": m["num_examples"], "tokens": tokens, "wall": wall, "cpu": cpu1 - cpu0, "rss_mib": rss,
            "anon_mib": anon, "startup": imports, "rows": m["num_rows"]}


def run_hf(spec: dict) -> dict:
    """The Hugging Face peer (see the module doc): datasets + TRL bfd packing + to_parquet."""
    t_import = time.perf_counter()
    import csv

    import datasets
    import jinja2
    import sentencepiece
    import yaml
    from trl.data_utils import pack_dataset

    from pipelines import resources

    datasets.disable_progress_bars()
    sampler = AnonSampler()
    cpu0, _ = _usage()
    start = time.perf_counter()
    imports = start - t_import
    family = yaml.safe_load(Path(spec["templates"], f"{BENCH_FAMILY}.yaml").read_text(encoding="utf-8"))
    (template,) = family["templates"]
    sources = (template["inputs"], template["targets"])
    model = str(resources.default_vocab_path())
    length = DECODER_LENGTH

    def render_and_tokenize(batch: dict) -> dict:
        if "sp" not in _SP:  # once per process (num_proc workers build their own; jinja2 templates do not pickle)
            env = jinja2.Environment()
            _SP["sp"] = sentencepiece.SentencePieceProcessor(model_file=model)
            _SP["templates"] = tuple(env.from_string(source) for source in sources)
        sp, (t_in, t_out) = _SP["sp"], _SP["templates"]
        inputs, targets = [], []
        for q, a, r in zip(batch["question"], batch["answer"], batch["rationale"]):
            fields = {"question": q.replace("\\n", "\n").strip(), "answer": a.replace("\\n", "\n").strip(),
                      "rationale": r.replace("\\n", "\n").strip()}
            inputs.append(t_in.render(fields).strip())
            targets.append(t_out.render(fields).strip())
        ids = sp.encode(inputs + targets, out_type=int)
        n = len(inputs)
        input_ids, masks = [], []
        for k in range(n):
            a, b = ids[k] + [1], ids[n + k] + [1]
            seq = (a + b)[:length]
            input_ids.append(seq)
            masks.append(([0] * len(a) + [1] * len(b))[:length])
        return {"input_ids": input_ids, "completion_mask": masks}

    files = sorted(str(f) for f in Path(spec["data"]).glob("*_train.tsv"))
    features = datasets.Features({c: datasets.Value("string") for c in ("question", "answer", "rationale")})
    ds = datasets.load_dataset("csv", data_files=files, split="train", delimiter="\t", column_names=["question", "answer", "rationale"],
                               quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False, features=features,
                               cache_dir=spec["cache"])
    num_proc = spec["num_proc"]
    ds = ds.map(render_and_tokenize, batched=True, batch_size=1000, num_proc=num_proc if num_proc > 1 else None,
                remove_columns=ds.column_names)
    packed = pack_dataset(ds, seq_length=length, strategy="bfd")
    packed.to_parquet(spec["out"])
    wall = time.perf_counter() - start
    cpu1, rss = _usage()
    anon = sampler.stop()
    tokens = sum(len(x) for x in ds["input_ids"])
    return {"examples": len(ds), "tokens": tokens, "wall": wall, "cpu": cpu1 - cpu0, "rss_mib": rss, "anon_mib": anon,
            "startup": imports, "rows": len(packed)}


_SP: dict = {}


def hf_sequences(path: str) -> list[tuple]:
    """The packed segments of the HF Parquet (split by `seq_lengths`), sorted."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["input_ids", "seq_lengths"]).to_pydict()
    out = []
    for ids, lengths in zip(t["input_ids"], t["seq_lengths"]):
        pos = 0
        for n in lengths:
            out.append(tuple(ids[pos:pos + n]))
            pos += n
    return sorted(out)


def flanmix_sequences(out: str) -> list[tuple]:
    """The segments of a decoder build's Parquet rows (split by `targets_segment_ids`), sorted."""
    import numpy as np
    import pyarrow.parquet as pq

    result = []
    for path in sorted(Path(out, "parquet").glob("*.parquet")):
        t = pq.read_table(path, columns=["targets", "targets_segment_ids"]).to_pydict()
        for ids, seg in zip(t["targets"], t["targets_segment_ids"]):
            ids, seg = np.asarray(ids), np.asarray(seg)
            for s in np.unique(seg[seg > 0]):
                result.append(tuple(ids[seg == s].tolist()))
    return sorted(result)


def matching(a: list[tuple], b: list[tuple]) -> int:
    """How many sequences of `a` have an equal partner in `b` (multiset intersection)."""
    from collections import Counter

    return sum((Counter(a) & Counter(b)).values())


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


def reuse_note(out: Path) -> str:
    """Exemplar reuse (max / mean) from a build's manifest, read here so that a --baseline checkout's
    build reports it too whatever its own benchmark script returns; empty for a zero-shot build."""
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    reuse = ((m.get("mixing") or {}).get("few_shot") or {}).get("exemplar_reuse") or {}  # since issue 14
    return f"  exemplar reuse max {reuse['max']} mean {reuse['mean']}" if reuse.get("max") else ""


def line(kind: str, r: dict) -> str:
    anon = f"  anon {r['anon_mib']:5.0f} MiB" if "anon_mib" in r else ""
    return (f"{kind:15} examples/s {r['examples'] / r['wall']:7.0f}  tokens/s {r['tokens'] / r['wall']:9.0f}  "
            f"wall {r['wall']:6.2f}s  cpu {r['cpu']:6.2f}s  peak RSS {r['rss_mib']:5.0f} MiB{anon}  "
            f"start-up+imports {r['startup']:.2f}s (process {r['process_wall']:.2f}s)")


def _median_line(kind: str, rs: list[dict]) -> str:
    m = {f: statistics.median(r[f] for r in rs) for f in ("wall", "cpu", "rss_mib", "startup", "examples", "tokens")}
    anon = f"  anon {statistics.median(r['anon_mib'] for r in rs):.0f} MiB" if "anon_mib" in rs[0] else ""
    return (f"median {kind:15} wall {m['wall']:.2f}s  examples/s {m['examples'] / m['wall']:.0f}  "
            f"tokens/s {m['tokens'] / m['wall']:.0f}  cpu {m['cpu']:.2f}s  peak RSS {m['rss_mib']:.0f} MiB{anon}  "
            f"start-up+imports {m['startup']:.2f}s")


HF_RUNS = (("hf np=1", 1), ("hf np=2", 2))
FLANMIX_RUNS = (("decoder parquet", {"layout": "decoder", "formats": "parquet"}), ("encdec both", {"layout": "encdec"}))


def main_hf(args, beam_args: list[str], work: Path) -> None:
    """`--hf`: the HF peer against the flanmix build, interleaved, paired ratios, token check."""
    catalog_dir, mixture = make_catalog(args.cot_dir, work, one_template=True, repeat=args.repeat)
    data = work / "data" if args.repeat > 1 else args.cot_dir
    templates = work / "templates"
    lines = sum(1 for f in data.glob("*_train.tsv") for _ in open(f, "rb"))
    print(f"data: {data} ({lines} lines, x{args.repeat}), template {BENCH_TEMPLATE}, cores: {os.cpu_count()}, "
          f"build options: {beam_args or '(defaults)'}")
    results: dict[str, list[dict]] = {k: [] for k, _ in HF_RUNS + FLANMIX_RUNS}
    results["floor"] = []
    checked = None
    for run in range(args.runs):
        order = list(HF_RUNS + FLANMIX_RUNS)
        if run % 2:  # interleave: alternate which side goes first, so drift in the machine's load evens out
            order.reverse()
        for kind, how in order:
            out = work / f"{kind.replace(' ', '_').replace('=', '')}{run}"
            if isinstance(how, int):
                spec = {"data": str(data), "templates": str(templates), "num_proc": how, "out": str(out) + ".parquet",
                        "cache": str(work / f"hfcache{run}_{how}")}
                results[kind].append(child("hf", json.dumps(spec)))
            else:
                spec = {"catalog": str(catalog_dir), "mixture": str(mixture), "out": str(out), "templates": str(templates), **how}
                results[kind].append(child("build", json.dumps(spec), *beam_args))
            print(f"run {run}  " + line(kind, results[kind][-1]) + f"  rows {results[kind][-1]['rows']}")
        if args.floor:
            results["floor"].append(child("floor", str(catalog_dir), str(work / f"floor{run}.tfrecord"), str(templates)))
            print(f"run {run}  " + line("floor", results["floor"][-1]))
        if checked is None:  # the token sequences of both sides, once
            hf, fm = hf_sequences(str(work / "hf_np10.parquet")), flanmix_sequences(str(work / "decoder_parquet0"))
            checked = (matching(hf, fm), len(hf), len(fm))
        for path in work.glob(f"hfcache{run}_*"):
            shutil.rmtree(path, ignore_errors=True)
    for kind, rs in results.items():
        if rs:
            print(_median_line(kind, rs))
    print(f"identical sequences: {checked[0]} of {checked[1]} (HF) / {checked[2]} (flanmix decoder)")
    for fm_kind, _ in FLANMIX_RUNS:
        for hf_kind, _ in HF_RUNS:
            ratios = [h["wall"] / f["wall"] for h, f in zip(results[hf_kind], results[fm_kind])]
            cpu = [h["cpu"] / f["cpu"] for h, f in zip(results[hf_kind], results[fm_kind])]
            print(f"paired speed-up {fm_kind} vs {hf_kind}: median {statistics.median(ratios):.2f}x "
                  f"(runs: {', '.join(f'{r:.2f}' for r in ratios)}; >1: flanmix faster); "
                  f"CPU seconds HF/flanmix {statistics.median(cpu):.2f}")
    if results["floor"]:
        ratios = [f["wall"] / fl["wall"] for f, fl in zip(results["encdec both"], results["floor"])]
        print(f"paired build/floor (encdec both): median {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cot_dir", type=Path, default=DEFAULT_COT)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seqio", action="store_true", help="also measure seqio's Beam cache job (about 40 s a run)")
    parser.add_argument("--hf", action="store_true", help="measure Hugging Face datasets + TRL bfd packing against the build")
    parser.add_argument("--repeat", type=int, default=1, help="--hf: concatenate each TSV this many times (10: 334k examples)")
    parser.add_argument("--floor", action="store_true", help="--hf: also run the single-process floor each round")
    parser.add_argument("--few_shot", action="store_true",
                        help="build half zero-shot, half few-shot (1-5 exemplars from each task's whole split)")
    parser.add_argument("--baseline", type=Path, help="another flanmix checkout whose build runs beside this one's")
    parser.add_argument("--_seqio", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--_floor", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--_build", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--_hf", help=argparse.SUPPRESS)
    args, beam_args = parser.parse_known_args()
    if args._floor:
        print(json.dumps(run_floor(*args._floor)))
        return
    if args._seqio:
        print(json.dumps(run_seqio(*args._seqio)))
        return
    if args._hf:
        print(json.dumps(run_hf(json.loads(args._hf))))
        return
    if args._build:
        if len(args._build) == 1:
            spec = json.loads(args._build[0])
        else:
            spec = dict(zip(("catalog", "mixture", "out"), args._build[:3]))
        print(json.dumps(run_build(spec, beam_args)))
        return
    if args.hf and (args.few_shot or args.baseline):
        parser.error("--few_shot and --baseline apply to the default mode, not to --hf")
    if args.baseline and not (args.baseline / "benchmarks" / "throughput.py").is_file():
        parser.error(f"--baseline {args.baseline}: no benchmarks/throughput.py there (not a flanmix checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.hf:
            main_hf(args, beam_args, work)
            return
        catalog_dir, mixture = make_catalog(args.cot_dir, work, few_shot=args.few_shot)
        print(f"data: {args.cot_dir} ({sum(1 for f in args.cot_dir.glob('*_train.tsv') for _ in open(f))} lines), "
              f"cores: {os.cpu_count()}, build options: {beam_args or '(defaults)'}")
        floors, builds, seqios, baselines = [], [], [], []
        for run in range(args.runs):
            floors.append(child("floor", str(catalog_dir), str(work / f"floor{run}.tfrecord")))
            print(line("floor", floors[-1]))
            builds.append(child("build", json.dumps({"catalog": str(catalog_dir), "mixture": str(mixture),
                                                     "out": str(work / f"build{run}")}), *beam_args))
            print(line("build", builds[-1]) + f"  rows {builds[-1]['rows']}" + reuse_note(work / f"build{run}"))
            if args.baseline:  # positional catalog/mixture/out: what older checkouts' --_build takes too
                baselines.append(child("build", str(catalog_dir), str(mixture), str(work / f"baseline{run}"), *beam_args,
                                       checkout=args.baseline.resolve()))
                print(line("base", baselines[-1]) + f"  rows {baselines[-1]['rows']}" + reuse_note(work / f"baseline{run}"))
            if args.seqio:
                seqios.append(child("seqio", str(args.cot_dir), str(work / f"seqio{run}")))
                print(line("seqio", seqios[-1]))
        med = {k: {f: statistics.median(r[f] for r in rs) for f in ("wall", "cpu", "rss_mib", "startup", "examples", "tokens")}
               for k, rs in (("floor", floors), ("build", builds), ("seqio", seqios), ("base", baselines)) if rs}
        for k, rs in (("floor", floors), ("build", builds), ("seqio", seqios), ("base", baselines)):
            if rs:
                print(_median_line(k, rs))
        if seqios:
            print(f"ratio seqio/build: {med['seqio']['wall'] / med['build']['wall']:.2f}  "
                  f"(seqio/floor: {med['seqio']['wall'] / med['floor']['wall']:.2f})")
        if baselines:
            print(f"ratio build/baseline ({args.baseline}): wall {med['build']['wall'] / med['base']['wall']:.2f}  "
                  f"cpu {med['build']['cpu'] / med['base']['cpu']:.2f}")
        print(f"ratio build/floor: {med['build']['wall'] / med['floor']['wall']:.2f}")


if __name__ == "__main__":
    main()
