"""Trainer throughput and memory on a built corpus: packed vs an unpacked baseline, with and without remat.

    .venv/bin/python benchmarks/trainer.py                      # out/demo (run `make demo` first); tiny, small
    .venv/bin/python benchmarks/trainer.py --corpus DIR --models tiny,base --remat none,full,dots --steps 3
    .venv/bin/python benchmarks/trainer.py --memory             # memory only (no timing), remat none/full/dots

Each (model, remat) runs the real jitted train step (forward, backward, Adafactor, dropout) on:

    packed     rows of the corpus as published (several examples per row)
    unpacked   the same examples, one per row, padded to the same lengths: the throughput baseline, i.e.
               what a trainer without packing would feed the same model

"tgt tok/s" counts non-padding target tokens (what the loss trains on), so packed / unpacked is how much
more training signal per second packing buys; "slot tok/s" counts all inputs + targets positions (what the
device computes). Shapes are fixed, so a step costs the same whatever it holds: the baseline's tgt tok/s is
the mean target tokens of all examples in the timed packed rows, one example per row, at the measured
unpacked step time (as many unpacked steps as packed ones). One packed step compiles first and is not timed.

Memory is XLA's memory analysis of the compiled step (arguments + temporaries + outputs - donated aliases),
the number the trainer's pre-flight check uses; "vs none" is against --remat none of the same model and
batch in the same run (the memory baseline). "peak GiB" is the device's peak_bytes_in_use after the timed
steps where the backend reports it (GPU/TPU), else n/a. MFU = model FLOPs/s over the bf16 dense peak
(see `trainer.metrics`); n/a on CPU.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout, even if not installed

DEFAULT_BATCH = {"tiny": 2, "small": 1}  # CPU-sized; pass --batch_size on an accelerator
DEFAULT_STEPS = {"tiny": 2, "small": 1}


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


def target_tokens(batch: dict) -> int:
    return int(np.count_nonzero(batch["targets_segment_ids"]))


def time_steps(s, state, batches: list[dict]) -> tuple[object, float]:
    """(state, seconds) of training on `batches` (already compiled)."""
    import jax

    from trainer.sharding import put_batch

    start = time.perf_counter()
    for batch in batches:
        state, metrics = s.step_fn(state, put_batch(batch, s.mesh), s.root_key)
    jax.block_until_ready(metrics)
    return state, time.perf_counter() - start


def device_peak_bytes():
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - not implemented on some backends
        return None
    return (stats or {}).get("peak_bytes_in_use")


def bench_model(corpus_dir: str, model: str, remat: str, batch_size: int, steps: int) -> dict:
    import jax

    from trainer.config import TrainConfig
    from trainer.data import TrainBatches
    from trainer.metrics import peak_flops, train_flops_per_row
    from trainer.train import setup

    cfg = TrainConfig(corpus=corpus_dir, out=tempfile.mkdtemp(), model=model, batch_size=batch_size, remat=remat,
                      grad_accum=1, eval_holdout_every=0, memory_limit_gb=1e6)  # measure, never refuse
    s = setup(cfg)
    lengths = dict(s.corpus.lengths)
    reader = TrainBatches(s.corpus, batch_size, 0, cfg.seed)
    packed = [reader.batch(i) for i in range(steps + 1)]
    rows = [{k: v[j] for k, v in b.items()} for b in packed[1:] for j in range(batch_size)]
    unpacked = unpacked_batches(rows, batch_size, lengths)
    state = s.init_state()
    state, _ = time_steps(s, state, packed[:1])  # compiles; packed and unpacked batches share the program
    state, t_packed = time_steps(s, state, packed[1:])
    state, t_unpacked = time_steps(s, state, unpacked[:steps])
    peak_bytes = device_peak_bytes()
    # A step costs the same whatever its rows hold (fixed shapes), so the baseline's rate is the mean
    # target tokens of *all* the examples of the timed packed rows, one per row, at the unpacked step time.
    examples = int(sum(r["targets_segment_ids"].max() for r in rows))
    tgt_packed = sum(target_tokens(b) for b in packed[1:])
    devices = jax.devices()
    peak = peak_flops(devices[0].device_kind)
    flops = train_flops_per_row(s.model_cfg, s.corpus.layout.name, lengths) * batch_size * steps
    slots = sum(b["inputs"].size + b["targets"].size for b in packed[1:])
    return {
        "model": model, "remat": remat, "params": s.num_params, "batch": batch_size, "steps": steps,
        "s_per_step": t_packed / steps, "slots": slots / t_packed,
        "packed_tgt": tgt_packed / t_packed,
        "unpacked_tgt": tgt_packed / examples * batch_size / (t_unpacked / steps),
        "unpacked_s_per_step": t_unpacked / steps,
        "examples_per_row": examples / (batch_size * steps),
        "mfu": flops / t_packed / (peak * len(devices)) if peak else None,
        "dtype": s.model_cfg.activation_dtype, "xla_bytes": s.memory.total if s.memory else None,
        "peak_bytes": peak_bytes,
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
    parser.add_argument("--steps", type=int, help="timed steps per model, remat and kind (default: tiny 2, others 1)")
    parser.add_argument("--batch_size", type=int, help="rows per step (default: tiny 2, others 1)")
    parser.add_argument("--remat", default="none,full", help="remat policies to run, the first is the memory baseline "
                                                            "(default: none,full)")
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
    print("throughput baseline: the same model and jitted train step on UNPACKED rows (each example alone in a row "
          "padded to the same lengths); 'tgt tok/s' = non-padding target tokens per second")
    if args.memory:
        memory_rows(args.corpus, args.models.split(","), args.batch_size or 1)
        return 0
    remats = args.remat.split(",")
    print(f"memory baseline: --remat {remats[0]} of the same model and batch")
    header = (f"{'model':6} {'remat':>5} {'params':>11} {'dtype':>8} {'batch':>5} {'steps':>5} {'s/step':>8} "
              f"{'slot tok/s':>11} {'tgt tok/s':>10} {'MFU':>6} {'ex/row':>6} {'unpacked s/step':>16} "
              f"{'unpacked tgt tok/s':>19} {'packed/unpacked':>16} {'XLA GiB':>8} {'vs ' + remats[0]:>8} {'peak GiB':>9}")
    print(header)
    for model in args.models.split(","):
        batch = args.batch_size or DEFAULT_BATCH.get(model, 1)
        steps = args.steps or DEFAULT_STEPS.get(model, 1)
        base_bytes = None
        for remat in remats:
            r = bench_model(args.corpus, model, remat, batch, steps)
            base_bytes = base_bytes or r["xla_bytes"]
            mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
            xla = "n/a" if r["xla_bytes"] is None else f"{r['xla_bytes'] / 2**30:.2f}"
            ratio = "n/a" if not (r["xla_bytes"] and base_bytes) else f"{r['xla_bytes'] / base_bytes:.2f}x"
            peak = "n/a" if r["peak_bytes"] is None else f"{r['peak_bytes'] / 2**30:.2f}"
            print(f"{model:6} {remat:>5} {r['params']:>11,} {r['dtype']:>8} {batch:>5} {steps:>5} {r['s_per_step']:>8.3f} "
                  f"{r['slots']:>11,.0f} {r['packed_tgt']:>10,.0f} {mfu:>6} {r['examples_per_row']:>6.1f} "
                  f"{r['unpacked_s_per_step']:>16.3f} {r['unpacked_tgt']:>19,.0f} "
                  f"{r['packed_tgt'] / r['unpacked_tgt']:>15.1f}x {xla:>8} {ratio:>8} {peak:>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
