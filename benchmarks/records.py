"""What the named records cost on the wire, against the positional tuples they replaced.

    python benchmarks/records.py [--n 512] [--repeat 200]

For one batch of N records (the build's batch size) as plain tuples (before), as a list of the
named records, and as the build sends them (a `records.Records` batch, pickled as columns), prints
the bytes and the time to encode and decode with pickle (what spill files and DoFn pickling use) and with Beam's FastPrimitivesCoder
(what a runner's shuffle uses for these untyped elements), for:

- RenderedExample vs (template_id, key, setting, inputs, targets, shots), as Render hands to Tokenize
  (fused on every runner: encoded only if a runner breaks fusion there);
- ShardItem vs (order, inputs, targets, provenance), as Tokenize hands to Pack through the shuffle
  (or, on the local runner, through pickled spill runs).

Values are realistic in size: 800 bytes of inputs ids, 200 of targets, CoT-like text.
"""
from __future__ import annotations

import argparse
import os
import pickle
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apache_beam.coders import coders  # noqa: E402

from pipelines.records import RenderedBatch, RenderedExample, ShardItem, ShardItems  # noqa: E402


def timed(fn, repeat: int) -> tuple[object, float]:
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    words = "the of a question answer reason step therefore so because".split()

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    rendered = [("cot_qa_reason_then_answer", f"train:{i}", "fs_noopt", text(60), text(40), (text(80), text(80)))
                for i in range(args.n)]
    shard = [(rng.getrandbits(64), os.urandom(800), os.urandom(200), f"cot_gsm8k|cot_qa|fs_noopt|train:{i}")
             for i in range(args.n)]
    coder = coders.FastPrimitivesCoder()
    print(f"{'record':16} {'form':13} {'pickle B':>9} {'dump ms':>8} {'load ms':>8} {'coder B':>9} {'enc ms':>7} {'dec ms':>7}")
    for label, raw, cls, batch_cls in (("RenderedExample", rendered, RenderedExample, RenderedBatch),
                                       ("ShardItem", shard, ShardItem, ShardItems)):
        forms = (("tuples", [tuple(r) for r in raw]), ("list", [cls(*r) for r in raw]),
                 (batch_cls.__name__, batch_cls(cls(*r) for r in raw)))
        for form, batch in forms:
            data, dump = timed(lambda: pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL), args.repeat)
            _, load = timed(lambda: pickle.loads(data), args.repeat)
            element = ("cot_gsm8k", batch)
            encoded, enc = timed(lambda: coder.encode(element), args.repeat)
            _, dec = timed(lambda: coder.decode(encoded), args.repeat)
            print(f"{label:16} {form:13} {len(data):9,} {dump:8.3f} {load:8.3f} {len(encoded):9,} {enc:7.3f} {dec:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
