"""What writing the data card adds to `flanmix build --mixture demo` (issue 19: under 5 %).

    python benchmarks/card_cost.py [--runs 5] [--code DIR]

Each round runs, in fresh processes and alternating which goes first, the demo build as shipped
(`card`) and the same build with the card left out (`no card`: `card.stage_card` replaced by a
function that writes nothing, everything else identical), and prints each command's wall time (from
the interpreter's start to its exit, so imports count) and the paired
difference. `--code DIR` measures another checkout's code (e.g. main's) with this script.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

NO_CARD = """
import sys
from pipelines.publish import card
card.stage_card = lambda manifest, staging, verify: ()
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""
WITH_CARD = """
import sys
from pipelines.cli import main
sys.exit(main(sys.argv[1:]))
"""


def one(code_dir: Path, program: str, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", program, "build", "--mixture", "demo", "--output", str(out), "--overwrite",
                    "--progress", "0"], check=True, cwd=code_dir, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"card": [], "no card": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            order = [("card", WITH_CARD), ("no card", NO_CARD)]
            if run % 2:
                order.reverse()
            for kind, program in order:
                walls[kind].append(one(args.code, program, Path(tmp) / kind.replace(" ", "_")))
            diff = walls["card"][-1] - walls["no card"][-1]
            print(f"run {run}: card {walls['card'][-1]:.2f}s  no card {walls['no card'][-1]:.2f}s  "
                  f"card adds {diff:+.2f}s ({100 * diff / walls['no card'][-1]:+.1f}%)")
    diffs = [c - n for c, n in zip(walls["card"], walls["no card"])]
    shares = [d / n for d, n in zip(diffs, walls["no card"])]
    print(f"median card {statistics.median(walls['card']):.2f}s  no card {statistics.median(walls['no card']):.2f}s  "
          f"paired: the card adds {statistics.median(diffs):+.2f}s, {100 * statistics.median(shares):+.1f}% of the command")


if __name__ == "__main__":
    main()
