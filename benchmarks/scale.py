"""Does the build stream? Wall time, examples/s and peak memory at 10^4, 10^5 and 10^6 examples.

    .venv/bin/python benchmarks/scale.py                       # 10^4, 10^5, 10^6
    .venv/bin/python benchmarks/scale.py --sizes 10000 100000  # a subset
    .venv/bin/python benchmarks/scale.py -- --direct_num_workers=1 --direct_running_mode=in_memory
    .venv/bin/python benchmarks/scale.py --speed --sizes 100000 --runs 3 -- --formats parquet --layout decoder
                     # speed rows: 1 in-process worker vs 2 worker processes, paired, with peak anon memory
    .venv/bin/python benchmarks/scale.py --skew                # the skewed mixture vs the balanced one

Each size gets a synthetic Flan-like corpus (generated once, cached under --workdir): four CoT-style
datasets in the `cot_tsv` format (question, answer, rationale), words drawn from the CoT samples that
ship in task_catalog/data/cot, lengths log-normal like Flan's (inputs heavy-tailed, median ~80 words;
rationales median ~30 words; answers a few words), rendered through the project's real `cot_qa`
templates at the default lengths 2048/512. The build is the real `flanmix build` in a subprocess
(flags after `--` are passed to it); peak RSS is the largest sum over that process and all its
children (Beam's multi_processing workers included), sampled every 0.2 s with psutil; CPU s is the
user+system time of the build and its children (getrusage), so CPU s / wall s shows how many cores
the build kept busy.

Baseline to compare against: the previous run of this script on the same machine (numbers in the
README, "Running at scale"). Linear scaling means examples/s stays roughly constant across sizes;
streaming means peak RSS does not grow with the corpus.

`--skew` builds two mixtures of the same output size (300k examples by default) and compares their
peak RSS per worker process (the target: skewed within 1.5x of balanced):

- skewed: a 10^6-row task (`hf_datasets`, a `save_to_disk` folder written by `datasets`, so the
  Arrow read units are exercised) downsampled to 0.1 copies a row, and a 10^4-row `cot_tsv` task
  upsampled to 20 copies a row (fixed rates 1:2, target 300k examples);
- balanced: the same two formats with 150k rows each, every row once.

Per worker is the largest RSS any one process of the build reached (the launcher is reported apart);
the output shards are sized by the expected output (`planning/shard_count.py`), which is what keeps
the upsampled task's shards from growing 20x.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import rss_anon  # noqa: E402 - one RssAnon reader for both benchmarks

ROOT = Path(__file__).resolve().parent.parent
DATASETS = 4
ROWS_PER_FILE = 50_000

ENTRY = """\
schema_version: 1
name: {name}
description: Synthetic Flan-like CoT data for benchmarks/scale.py.
collections: [cot]
task_categories: [Synthetic]
languages: [English]
default_cap: 100000000
loader: {{type: cot_tsv, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [cot_qa]
"""

MIXTURE = """\
schema_version: 1
name: scale{n}
description: Synthetic benchmark corpus of {n} examples.
seed: 0
split: train
default_cap: 100000000
members:
{members}
"""


def word_list() -> np.ndarray:
    words: set[str] = set()
    for path in sorted((ROOT / "task_catalog" / "data" / "cot").glob("*.tsv")):
        words.update(re.findall(r"[A-Za-z][A-Za-z']*|\d+", path.read_text(encoding="utf-8")))
    return np.array(sorted(words))


def _texts(rng: np.random.Generator, words: np.ndarray, n: int, median: float, sigma: float, cap: int) -> list[str]:
    lengths = np.clip(rng.lognormal(math.log(median), sigma, n).astype(int), 1, cap)
    flat = words[rng.integers(0, len(words), int(lengths.sum()))]
    out, start = [], 0
    for length in lengths:
        out.append(" ".join(flat[start:start + length]))
        start += length
    return out


def generate(n: int, workdir: Path) -> Path:
    """Write the catalog, data and mixture for `n` examples under workdir/nN; returns its directory."""
    base = workdir / f"n{n}"
    done = base / ".complete"
    if done.exists():
        return base
    rng = np.random.default_rng(n)
    words = word_list()
    (base / "catalog").mkdir(parents=True, exist_ok=True)
    (base / "data").mkdir(parents=True, exist_ok=True)
    members = []
    for d in range(DATASETS):
        name = f"synthetic_{d}"
        rows = n // DATASETS + (1 if d < n % DATASETS else 0)
        files = max(1, math.ceil(rows / ROWS_PER_FILE))
        for f in range(files):
            count = min(ROWS_PER_FILE, rows - f * ROWS_PER_FILE)
            questions = _texts(rng, words, count, 80, 0.9, 4000)
            rationales = _texts(rng, words, count, 30, 0.8, 1000)
            answers = _texts(rng, words, count, 2, 0.6, 20)
            with open(base / "data" / f"{name}-{f:04d}.tsv", "w", encoding="utf-8") as handle:
                handle.writelines(f"{q}\t{a}\t{r}\n" for q, a, r in zip(questions, answers, rationales))
        (base / "catalog" / f"{name}.yaml").write_text(
            ENTRY.format(name=name, path=base / "data" / f"{name}-*.tsv"), encoding="utf-8")
        members.append(f"  - dataset: {name}")
    (base / "mixture.yaml").write_text(MIXTURE.format(n=n, members="\n".join(members)), encoding="utf-8")
    done.touch()
    return base


HF_ENTRY = """\
schema_version: 1
name: {name}
description: Synthetic Flan-like CoT data (a save_to_disk folder) for benchmarks/scale.py --skew.
collections: [cot]
task_categories: [Synthetic]
languages: [English]
default_cap: 100000000
loader: {{type: hf_datasets, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [cot_qa]
"""

SKEW_MIXTURE = """\
schema_version: 1
name: {name}
description: benchmarks/scale.py --skew, {description}
seed: 0
split: train
default_cap: 100000000
target: {{examples: {target}}}
members:
  - {{dataset: big_hf, rate: {big_rate}}}
  - {{dataset: small_tsv, rate: {small_rate}}}
"""


def _columns(rng: np.random.Generator, words: np.ndarray, count: int) -> tuple[list, list, list]:
    return _texts(rng, words, count, 80, 0.9, 4000), _texts(rng, words, count, 2, 0.6, 20), _texts(rng, words, count, 30, 0.8, 1000)


def generate_skew(name: str, big_rows: int, small_rows: int, target: int, rates: tuple[float, float], workdir: Path) -> Path:
    """A two-task project: `big_hf` (save_to_disk folder) and `small_tsv` (cot_tsv)."""
    import datasets

    base = workdir / f"{name}-{big_rows}-{small_rows}-{target}"
    if (base / ".complete").exists():
        return base
    rng = np.random.default_rng(big_rows + small_rows)
    words = word_list()
    for sub in ("catalog", "data"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    q, a, r = _columns(rng, words, big_rows)
    ds = datasets.Dataset.from_dict({"question": q, "answer": a, "rationale": r})
    ds.save_to_disk(str(base / "data" / "big_hf"), num_shards=max(1, big_rows // 100_000))
    del q, a, r, ds
    q, a, r = _columns(rng, words, small_rows)
    with open(base / "data" / "small_tsv.tsv", "w", encoding="utf-8") as handle:
        handle.writelines(f"{x}\t{y}\t{z}\n" for x, y, z in zip(q, a, r))
    (base / "catalog" / "big_hf.yaml").write_text(HF_ENTRY.format(name="big_hf", path=base / "data" / "big_hf"), encoding="utf-8")
    (base / "catalog" / "small_tsv.yaml").write_text(
        ENTRY.format(name="small_tsv", path=base / "data" / "small_tsv.tsv"), encoding="utf-8")
    big_rate = rates[0]
    small_rate = rates[1]
    description = (f"{big_rows} hf rows x {big_rate * target / big_rows / sum(rates):.2f}, "
                   f"{small_rows} tsv rows x {small_rate * target / small_rows / sum(rates):.2f}")
    (base / "mixture.yaml").write_text(SKEW_MIXTURE.format(name=name, description=description, target=target,
                                                           big_rate=big_rate, small_rate=small_rate), encoding="utf-8")
    (base / ".complete").touch()
    return base


def run_skew(args, extra: list[str]) -> int:
    """The skewed mixture against the balanced one, same output size; peak RSS per worker."""
    target, big, small = args.skew_target, args.skew_big_rows, args.skew_small_rows
    small_share = 20 * small / target  # 20 copies of each small row
    make = {
        "balanced": lambda: generate_skew("balanced", target // 2, target // 2, target, (1, 1), args.workdir),
        "skewed": lambda: generate_skew("skewed", big, small, target, (1 - small_share, small_share), args.workdir),
    }
    cases = [(name, make[name]()) for name in args.skew_cases.split(",")]
    print(f"flanmix scale benchmark --skew: {os.cpu_count()} cores, build flags {extra or '(defaults)'}")
    print(f"{'case':9} {'source MB':>10} {'examples':>9} {'shards':>6} {'wall s':>8} {'CPU s':>8} {'examples/s':>11} "
          f"{'launcher MB':>12} {'worker MB':>10} {'total MB':>9} {'anon MB':>8}  copies a row")
    results = {}
    for name, base in cases:
        r = run_size(0, args.workdir, extra, base=base)
        per = {d: v["examples"] / max(1, v["rows_read"]) for d, v in r["manifest"]["datasets"].items()}
        results[name] = r
        print(f"{name:9} {r['source_mb']:10.1f} {r['examples']:9d} {r['shards']:6d} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
              f"{r['examples_per_s']:11.0f} {r['launcher_mb']:12.0f} {r['worker_mb']:10.0f} {r['peak_rss_mb']:9.0f} {r['peak_anon_mb']:8.0f}  "
              + ", ".join(f"{d} {v:.2f}" for d, v in sorted(per.items())), flush=True)
    if {"skewed", "balanced"} <= set(results):
        ratio = results["skewed"]["worker_mb"] / max(1.0, results["balanced"]["worker_mb"])
        print(f"peak RSS per worker, skewed / balanced: {ratio:.2f} (target <= 1.5)")
    return 0


class PeakRss(threading.Thread):
    """Largest total RSS (and RssAnon, `peak_anon`) of a process tree, and each process's own peak RSS
    (`per_process`), sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval, self.peak, self._done = psutil.Process(pid), interval, 0, threading.Event()
        self.peak_anon = 0
        self.per_process: dict[int, int] = {}  # pid -> its own peak RSS (--skew: per worker)

    def run(self):
        while not self._done.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = anon = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                total += rss
                self.per_process[p.pid] = max(self.per_process.get(p.pid, 0), rss)
                anon += rss_anon(p.pid)
            self.peak = max(self.peak, total)
            self.peak_anon = max(self.peak_anon, anon)
            self._done.wait(self.interval)

    def stop(self):
        self._done.set()
        self.join()


def run_size(n: int, workdir: Path, extra: list[str], base: Path | None = None) -> dict:
    base = base or generate(n, workdir)
    out = base / "out"
    source_bytes = sum(p.stat().st_size for p in (base / "data").rglob("*") if p.is_file())
    cmd = [sys.executable, "-m", "pipelines.cli", "--catalog", str(base / "catalog"), "build",
           "--mixture", str(base / "mixture.yaml"), "--output", str(out), "--overwrite", "--progress", "0", *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = PeakRss(proc.pid)
    sampler.start()
    log, _ = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"build of {n} failed (rc {proc.returncode}):\n{log[-4000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    examples = manifest["num_examples"]
    return {"n": n, "source_mb": source_bytes / 2**20, "wall_s": wall, "examples": examples,
            "examples_per_s": examples / wall, "peak_rss_mb": sampler.peak / 2**20, "cpu_s": cpu,
            "peak_anon_mb": sampler.peak_anon / 2**20,
            "rows": manifest["num_rows"], "shards": manifest["num_shards"],
            "launcher_mb": sampler.per_process.get(proc.pid, 0) / 2**20,
            "worker_mb": max([v for k, v in sampler.per_process.items() if k != proc.pid] or [sampler.per_process.get(proc.pid, 0)]) / 2**20,
            "processes": len(sampler.per_process), "manifest": manifest}


ONE_PROCESS = ["--direct_running_mode=multi_threading", "--direct_num_workers=1"]
TWO_PROCESSES = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def speed_rows(sizes: list[int], workdir: Path, extra: list[str], runs: int) -> None:
    """`--speed`: per size, one in-process worker and two worker processes, interleaved (`runs`
    rounds, alternating which goes first), medians and the paired speed-up of the second process."""
    import statistics

    print(f"{'examples':>9} {'mode':>12} {'wall s':>8} {'CPU s':>8} {'examples/s':>11} {'peak RSS MB':>12} {'anon MB':>8}")
    for n in sizes:
        got: dict[str, list[dict]] = {"1 process": [], "2 processes": []}
        for run in range(runs):
            order = [("1 process", ONE_PROCESS), ("2 processes", TWO_PROCESSES)]
            for mode, flags in (order if run % 2 == 0 else order[::-1]):
                got[mode].append(run_size(n, workdir, [*extra, *flags]))
        for mode, rs in got.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s", "peak_rss_mb", "peak_anon_mb")}
            print(f"{rs[0]['examples']:9d} {mode:>12} {med['wall_s']:8.1f} {med['cpu_s']:8.1f} "
                  f"{rs[0]['examples'] / med['wall_s']:11.0f} {med['peak_rss_mb']:12.0f} {med['peak_anon_mb']:8.0f}", flush=True)
        ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(got["1 process"], got["2 processes"])]
        print(f"{'':9} paired speed-up of 2 processes over 1: median {statistics.median(ratios):.2f}x "
              f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "flanmix-scale")
    parser.add_argument("--speed", action="store_true",
                        help="speed rows: one in-process worker vs two worker processes per size, paired")
    parser.add_argument("--runs", type=int, default=1, help="--speed: rounds per size")
    parser.add_argument("--skew", action="store_true", help="the skewed mixture vs the balanced one (see above)")
    parser.add_argument("--skew-target", type=int, default=300_000, help="examples of each --skew build")
    parser.add_argument("--skew-big-rows", type=int, default=1_000_000)
    parser.add_argument("--skew-small-rows", type=int, default=10_000)
    parser.add_argument("--skew-cases", default="balanced,skewed", help="which --skew builds, comma-separated")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    if args.skew:
        return run_skew(args, extra)
    print(f"flanmix scale benchmark: {os.cpu_count()} cores, build flags {extra or '(defaults)'}")
    if args.speed:
        speed_rows(args.sizes, args.workdir, extra, args.runs)
        return 0
    print(f"{'examples':>9} {'source MB':>10} {'shards':>6} {'packed rows':>11} {'wall s':>8} {'CPU s':>8} "
          f"{'examples/s':>11} {'peak RSS MB':>12} {'anon MB':>8}")
    for n in args.sizes:
        r = run_size(n, args.workdir, extra)
        print(f"{r['examples']:9d} {r['source_mb']:10.1f} {r['shards']:6d} {r['rows']:11d} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} "
              f"{r['examples_per_s']:11.0f} {r['peak_rss_mb']:12.0f} {r['peak_anon_mb']:8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
