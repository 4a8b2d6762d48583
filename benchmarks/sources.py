"""Source snapshots: snapshot throughput and build-from-snapshot throughput beside a direct build.

    python benchmarks/sources.py [--cot_dir DIR] [--runs 3] [Beam flags]

Over the 7 Flan chain-of-thought training TSVs (33,443 rows; default ../shared/data/flan/cot beside
the checkout, the catalog `benchmarks/throughput.py` makes), each run measures in one process:

1. snapshot: `flanmix sources snapshot`'s job (plan, read every source through its loader, encode
   to Parquet, stage, verify, commit, sources.json) into a fresh directory;
2. direct: `flanmix build` of the mixture from the TSVs (the baseline);
3. from snapshot: the same build with `--sources` (every file hash-checked on read);

and checks that 2 and 3 wrote the same data files (SHA-256). Prints rows/s and wall seconds per run
and the medians; the last line is `ratio from_snapshot/direct: X.XX` (wall, median). Rows are the
source rows read (the build's `rows_read`). Wall times exclude imports.
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import DEFAULT_COT, make_catalog  # noqa: E402


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cot_dir", type=Path, default=DEFAULT_COT)
    parser.add_argument("--runs", type=int, default=3)
    args, beam_args = parser.parse_known_args()

    from pipelines import resources
    from pipelines.definitions.catalog import load_catalog
    from pipelines.definitions.mixtures import load_mixture
    from pipelines.definitions.templates import load_templates
    from pipelines.planning.plan import BuildOptions, make_plan
    from pipelines.runner.graph import run_build
    from pipelines.runner.progress import quiet_known_beam_noise
    from pipelines.sources.snapshot import plan_snapshot, run_snapshot
    from pipelines.vocab import Vocabulary

    quiet_known_beam_noise()
    work = Path(tempfile.mkdtemp(prefix="flanmix-bench-sources-"))
    catalog_dir, mixture_path = make_catalog(args.cot_dir, work)
    catalog, families, mixture = load_catalog(catalog_dir), load_templates(), load_mixture(mixture_path)
    vocab = Vocabulary.load(resources.default_vocab_path())
    results: dict[str, list[tuple[float, int]]] = {"snapshot": [], "direct": [], "from_snapshot": []}
    for run in range(args.runs):
        start = time.perf_counter()
        snap = work / f"snap{run}"
        data = run_snapshot(plan_snapshot(mixture, catalog, str(snap)), beam_args)
        rows = sum(sum(s.get("rows", {}).values()) for s in data["sources"].values())
        results["snapshot"].append((time.perf_counter() - start, rows))
        for kind, options in (("direct", {}), ("from_snapshot", {"sources": str(snap)})):
            start = time.perf_counter()
            plan = make_plan(mixture, catalog, families, vocab, BuildOptions(**options))
            out = work / f"{kind}{run}"
            run_build(plan, vocab.model_proto, str(out), beam_args, all_cores=True)
            import json

            manifest = json.loads((out / "manifest.json").read_text())
            read = sum(d["rows_read"] for d in manifest["datasets"].values())
            results[kind].append((time.perf_counter() - start, read))
        same = digest(work / f"direct{run}") == digest(work / f"from_snapshot{run}")
        print(f"run {run}: " + "  ".join(f"{k} {w:.2f}s {n / w:,.0f} rows/s" for k, ((w, n)) in
                                         ((k, v[-1]) for k, v in results.items()))
              + f"  identical data files: {same}", flush=True)
        if not same:
            sys.exit("build from the snapshot differs from the direct build")
    med = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    rows = results["direct"][0][1]
    for k, w in med.items():
        print(f"median {k:14} {w:.2f}s  {rows / w:,.0f} rows/s")
    print(f"ratio from_snapshot/direct: {med['from_snapshot'] / med['direct']:.2f}")


if __name__ == "__main__":
    main()
