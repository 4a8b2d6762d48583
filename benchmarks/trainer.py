"""Trainer throughput on a built corpus: tokens/s (and MFU on GPU/TPU), packed vs an unpacked baseline.

    .venv/bin/python benchmarks/trainer.py                      # out/demo (run `make demo` first); tiny, small
    .venv/bin/python benchmarks/trainer.py --corpus DIR --models tiny,base --steps 3

Each model runs the real jitted train step (forward, backward, Adafactor, dropout) on:

    packed     rows of the corpus as published (several examples per row)
    unpacked   the same examples, one per row, padded to the same lengths: the baseline, i.e. what a
               trainer without packing would feed the same model

"real tok/s" counts non-padding inputs + targets tokens, so packed / unpacked real tok/s is how much
more data per second packing buys; "slot tok/s" counts all positions (what the device computes).
Shapes are fixed, so a step costs the same whatever it holds: the baseline's real tok/s is the mean
real tokens of all examples in the timed packed rows, one example per row, at the measured unpacked
step time (timing only as many unpacked steps as packed ones). MFU = model FLOPs/s over the bf16
dense peak (see `trainer.metrics`); n/a on CPU. One packed step compiles first and is not timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, even if not installed

DEFAULT_BATCH = {"tiny": 4, "small": 1}  # CPU-sized; pass --batch_size on an accelerator
DEFAULT_STEPS = {"tiny": 3, "small": 2}


def unpacked_batches(packed_rows: list[dict], batch_size: int, lengths: dict) -> list[dict]:
    """Re-lay the examples of packed rows one per row (segment 1, positions from 0, padded)."""
    from pipelines.formats.rows import unpack_row

    rows = []
    for packed in packed_rows:
        for inputs, targets in unpack_row(packed):
            row = {}
            for side, ids in (("inputs", inputs), ("targets", targets)):
                n, length = len(ids), lengths[side]
                row[side] = np.pad(np.asarray(ids, np.int32), (0, length - n))
                row[f"{side}_segment_ids"] = np.pad(np.ones(n, np.int32), (0, length - n))
                row[f"{side}_positions"] = np.pad(np.arange(n, dtype=np.int32), (0, length - n))
            rows.append(row)
    return [{k: np.stack([r[k] for r in rows[i:i + batch_size]]) for k in rows[0]}
            for i in range(0, len(rows) - batch_size + 1, batch_size)]


def time_steps(s, state, batches: list[dict]) -> tuple[object, float, int, int]:
    """(state, seconds, real tokens, slot tokens) of training on `batches` (already compiled)."""
    import jax

    from trainer.sharding import put_batch
    from trainer.train import real_tokens

    start = time.perf_counter()
    for batch in batches:
        state, metrics = s.step_fn(state, put_batch(batch, s.mesh), s.root_key)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    real = sum(real_tokens(b) for b in batches)
    slots = sum(b["inputs"].size + b["targets"].size for b in batches)
    return state, seconds, real, slots


def bench_model(corpus_dir: str, model: str, batch_size: int, steps: int) -> dict:
    import jax

    from trainer.config import TrainConfig
    from trainer.data import TrainBatches
    from trainer.metrics import peak_flops, train_flops_per_row
    from trainer.train import setup

    cfg = TrainConfig(corpus=corpus_dir, out=tempfile.mkdtemp(), model=model, batch_size=batch_size,
                      eval_holdout_every=0)
    s = setup(cfg)
    lengths = dict(s.corpus.lengths)
    reader = TrainBatches(s.corpus, batch_size, 0, cfg.seed)
    packed = [reader.batch(i) for i in range(steps + 1)]
    rows = [{k: v[j] for k, v in b.items()} for b in packed[1:] for j in range(batch_size)]
    unpacked = unpacked_batches(rows, batch_size, lengths)
    state = s.init_state()
    state, _, _, _ = time_steps(s, state, packed[:1])  # compiles; packed and unpacked batches share the program
    state, t_packed, real_packed, slots = time_steps(s, state, packed[1:])
    state, t_unpacked, _, _ = time_steps(s, state, unpacked[:steps])
    # A step costs the same whatever its rows hold (fixed shapes), so the baseline's rate is the mean
    # real tokens of *all* the examples of the timed packed rows, one per row, at the unpacked step time.
    examples = int(sum(r["targets_segment_ids"].max() for r in rows))
    unpacked_real = real_packed / examples * batch_size / (t_unpacked / steps)
    devices = jax.devices()
    peak = peak_flops(devices[0].device_kind)
    flops = train_flops_per_row(s.model_cfg, s.corpus.layout.name, lengths) * batch_size * steps
    return {
        "model": model, "params": s.num_params, "batch": batch_size, "steps": steps,
        "s_per_step": t_packed / steps,
        "packed_real": real_packed / t_packed, "slots": slots / t_packed,
        "unpacked_real": unpacked_real, "unpacked_s_per_step": t_unpacked / steps,
        "examples_per_row": examples / (batch_size * steps),
        "mfu": flops / t_packed / (peak * len(devices)) if peak else None,
        "dtype": s.model_cfg.activation_dtype,
    }


def memory_rows(corpus_dir: str, models: list[str], batch_size: int) -> None:
    """Peak memory of the compiled train step (XLA's memory analysis: arguments + temporaries + outputs -
    aliased) with and without rematerialization; the baseline is remat none in the same run."""
    from trainer.config import TrainConfig
    from trainer.train import setup

    print(f"memory of one train step (XLA estimate), batch {batch_size}, grad_accum 1; baseline: --remat none")
    print(f"{'model':6} {'remat':>6} {'GiB':>8} {'temporaries GiB':>16} {'vs none':>8}")
    for model in models:
        base = None
        for remat in ("none", "full", "dots"):
            cfg = TrainConfig(corpus=corpus_dir, out=tempfile.mkdtemp(), model=model, batch_size=batch_size,
                              grad_accum=1, remat=remat, eval_holdout_every=0, memory_limit_gb=1e6)
            s = setup(cfg)
            est = s.memory
            base = base or est.total
            print(f"{model:6} {remat:>6} {est.total / 2**30:>8.2f} {est.temporaries / 2**30:>16.2f} "
                  f"{est.total / base:>7.2f}x", flush=True)
            del s


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="out/demo")
    parser.add_argument("--models", default="tiny,small")
    parser.add_argument("--steps", type=int, help="timed steps per model and kind (default: tiny 3, others 2)")
    parser.add_argument("--batch_size", type=int, help="rows per step (default: tiny 4, others 1)")
    parser.add_argument("--memory", action="store_true", help="only the memory table (remat none/full/dots)")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.corpus, "manifest.json")):
        print(f"no corpus at {args.corpus}: run `make demo` or pass --corpus DIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax

    from flanmix_corpus.reader import read_manifest

    manifest = read_manifest(args.corpus)
    devices = jax.devices()
    eff = manifest["packing_efficiency"]
    lengths = manifest["sequence_length"]
    print(f"flanmix trainer benchmark: corpus {args.corpus} ({manifest['layout']}, {manifest['num_rows']} rows, "
          f"{manifest['num_examples']} examples, lengths {lengths}, packing efficiency inputs {eff['inputs']:.3f} / "
          f"targets {eff['targets']:.3f}); {len(devices)} x {devices[0].device_kind} ({jax.default_backend()})")
    print("baseline: the same model and jitted train step on UNPACKED rows (each example alone in a row padded to the "
          "same lengths); 'real tok/s' = non-padding inputs+targets tokens per second")
    if args.memory:
        memory_rows(args.corpus, args.models.split(","), args.batch_size or 1)
        return 0
    header = (f"{'model':6} {'params':>11} {'dtype':>8} {'batch':>5} {'steps':>5} {'s/step':>8} {'slot tok/s':>11} "
              f"{'real tok/s':>11} {'MFU':>6} {'ex/row':>6} {'unpacked s/step':>16} {'unpacked real tok/s':>20} "
              f"{'packed/unpacked':>16}")
    print(header)
    for model in args.models.split(","):
        batch = args.batch_size or DEFAULT_BATCH.get(model, 1)
        steps = args.steps or DEFAULT_STEPS.get(model, 2)
        r = bench_model(args.corpus, model, batch, steps)
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"{model:6} {r['params']:>11,} {r['dtype']:>8} {batch:>5} {steps:>5} {r['s_per_step']:>8.3f} "
              f"{r['slots']:>11,.0f} {r['packed_real']:>11,.0f} {mfu:>6} {r['examples_per_row']:>6.1f} "
              f"{r['unpacked_s_per_step']:>16.3f} {r['unpacked_real']:>20,.0f} "
              f"{r['packed_real'] / r['unpacked_real']:>15.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
