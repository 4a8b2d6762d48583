"""Packing: flanmix's streaming best-fit decreasing against seqio's packing, on the same token sequences.

    python benchmarks/packing.py [--synthetic N] [--demo 2048=DIR 512=DIR]

Corpora
- demo: the demo mixture built by the real job (`make_plan` + `run_build`, 1 shard) at each setting's
  lengths, its rows unpacked back into the examples' token sequences: exactly what the pipeline
  produced (overlong truncation, few-shot prompts fitted to the inputs length), in the order the Pack
  stage feeds them (the keyed hash of seed, dataset and row id). `--demo 2048=DIR` reuses a corpus.
- synthetic: N examples (default 20,000) with Flan-like lengths: inputs lognormal (median 200 tokens,
  sigma 0.9: a long tail of few-shot-sized prompts), targets lognormal (median 30, sigma 1.0), each plus
  EOS and cut to the setting's lengths as `fit_to_length` does; numpy seed 0, generation order.

For each corpus and encoder-decoder setting IN/TG (2048/512 and 512/128) both packers get the same
sequences in the same order:
- flanmix: `pipelines.formats.rows.pack_examples` (buffer 10,000 examples, the build's default);
- seqio: `seqio.utils.trim_and_pack_dataset` on a tf.data dataset of the sequences with feature lengths
  {"inputs": IN, "targets": TG} (use_custom_ops=False: seqio's only portable path; it is what
  EncDecFeatureConverter(pack=True) runs).
The lower bound is max(ceil(inputs tokens / IN), ceil(targets tokens / TG)): no packer can use fewer
rows. Decoder-only lines pack each example's inputs+targets into rows of IN+TG, flanmix's
`pack_decoder_examples` against seqio's packing of the concatenated sequences as {"targets": IN+TG}.

Prints, per corpus and setting:

    rows/bound IN/TG: flanmix X.XXX seqio Y.YYY
    efficiency IN/TG: flanmix inputs .. targets .. | seqio inputs .. targets ..   (non-pad / slots)
    tokens/row IN/TG: flanmix N seqio M | rows flanmix R seqio S bound B | seconds flanmix T seqio U
    rows/bound decoder L: flanmix X.XXX seqio Y.YYY   (and its efficiency / tokens per row lines)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipelines.formats.fit import fit_to_length  # noqa: E402
from pipelines.formats.rows import TokenizedExample, pack_decoder_examples, pack_examples, unpack_row  # noqa: E402

SETTINGS = ((2048, 512), (512, 128))


# --- corpora ---------------------------------------------------------------------------------------

def demo_sequences(inputs_length: int, targets_length: int, corpus_dir: str | None, work: Path) -> list[tuple]:
    """(inputs ids, targets ids) of every demo example as the pipeline produced it, in Pack's order."""
    import pyarrow.parquet as pq

    from pipelines.planning.hashing import keyed_hash
    from flanmix_corpus.reader import read_manifest

    if corpus_dir is None:
        from pipelines import resources
        from pipelines.runner.graph import run_build
        from pipelines.definitions.catalog import load_catalog
        from pipelines.definitions.mixtures import load_mixture
        from pipelines.planning.plan import BuildOptions, make_plan
        from pipelines.definitions.templates import load_templates
        from pipelines.vocab import Vocabulary

        vocab = Vocabulary.load(resources.default_vocab_path())
        plan = make_plan(load_mixture("demo"), load_catalog(), load_templates(), vocab,
                         BuildOptions(num_shards=1, inputs_length=inputs_length, targets_length=targets_length))
        corpus_dir = str(work / f"demo_{inputs_length}")
        run_build(plan, vocab.model_proto, corpus_dir, [])
    manifest = read_manifest(corpus_dir)
    assert manifest["sequence_length"] == {"inputs": inputs_length, "targets": targets_length}, manifest["sequence_length"]
    examples = []
    for f in sorted(f["path"] for f in manifest["files"] if f["path"].startswith("parquet/")):
        for row in pq.read_table(os.path.join(corpus_dir, f)).to_pylist():
            for (inputs, targets), prov in zip(unpack_row(row), row["provenance"]):
                dataset, _, _, key = prov.split("|")
                examples.append((keyed_hash(manifest["seed"], "order", dataset, key), prov, inputs, targets))
    examples.sort(key=lambda e: (e[0], e[1]))
    return [(np.asarray(i, np.int32), np.asarray(t, np.int32)) for _, _, i, t in examples]


def synthetic_lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = np.round(rng.lognormal(np.log(200), 0.9, n)).astype(np.int64)
    targets = np.round(rng.lognormal(np.log(30), 1.0, n)).astype(np.int64)
    return np.maximum(inputs, 1), np.maximum(targets, 1)


def synthetic_sequences(lengths, inputs_length: int, targets_length: int) -> list[tuple]:
    """Token ids 2.. (never pad 0 or EOS 1), then EOS, cut like `fit_to_length`."""
    out = []
    for n_in, n_tg in zip(*lengths):
        ids_in = np.arange(2, 2 + min(n_in, inputs_length), dtype=np.int32) % 30000 + 2
        ids_tg = np.arange(2, 2 + min(n_tg, targets_length), dtype=np.int32) % 30000 + 2
        out.append((fit_to_length(ids_in, inputs_length)[0], fit_to_length(ids_tg, targets_length)[0]))
    return out


# --- packers ---------------------------------------------------------------------------------------

def flanmix_rows(seqs, lengths: dict[str, int]) -> tuple[list[dict], float]:
    start = time.perf_counter()
    if set(lengths) == {"targets"}:
        examples = [TokenizedExample(i, t, str(k)) for k, (i, t) in enumerate(seqs)]
        rows = [r.arrays for r in pack_decoder_examples(examples, lengths["targets"])]
    else:
        examples = [TokenizedExample(i, t, str(k)) for k, (i, t) in enumerate(seqs)]
        rows = [r.arrays for r in pack_examples(examples, lengths["inputs"], lengths["targets"])]
    return rows, time.perf_counter() - start


def seqio_rows(seqs, lengths: dict[str, int]) -> tuple[list[dict], float]:
    import seqio
    import tensorflow as tf

    if set(lengths) == {"targets"}:
        data = [{"targets": np.concatenate([i, t])} for i, t in seqs]
    else:
        data = [{"inputs": i, "targets": t} for i, t in seqs]
    spec = {k: tf.TensorSpec([None], tf.int32) for k in lengths}
    start = time.perf_counter()
    ds = tf.data.Dataset.from_generator(lambda: iter(data), output_signature=spec)
    packed = seqio.utils.trim_and_pack_dataset(ds, lengths, use_custom_ops=False)
    rows = list(packed.as_numpy_iterator())
    return rows, time.perf_counter() - start


# --- report ----------------------------------------------------------------------------------------

def compare(label: str, seqs, lengths: dict[str, int], in_tokens: int, tg_tokens: int) -> None:
    totals = {"inputs": in_tokens, "targets": tg_tokens} if "inputs" in lengths else {"targets": in_tokens + tg_tokens}
    bound = max(math.ceil(totals[k] / lengths[k]) for k in lengths)
    result = {}
    for name, packer in (("flanmix", flanmix_rows), ("seqio", seqio_rows)):
        rows, seconds = packer(seqs, lengths)
        nonpad = {k: sum(int(np.count_nonzero(r[f"{k}_segment_ids"])) for r in rows) for k in lengths}
        assert nonpad == totals, (name, nonpad, totals)  # every token packed exactly once
        result[name] = (len(rows), {k: nonpad[k] / (len(rows) * lengths[k]) for k in lengths}, seconds)
    f, s = result["flanmix"], result["seqio"]
    tokens = sum(totals.values())
    print(f"rows/bound {label}: flanmix {f[0] / bound:.3f} seqio {s[0] / bound:.3f}")
    eff = {n: " ".join(f"{k} {v:.3f}" for k, v in r[1].items()) for n, r in result.items()}
    print(f"efficiency {label}: flanmix {eff['flanmix']} | seqio {eff['seqio']}")
    print(f"tokens/row {label}: flanmix {tokens / f[0]:.1f} seqio {tokens / s[0]:.1f} | rows flanmix {f[0]} "
          f"seqio {s[0]} bound {bound} | seconds flanmix {f[2]:.1f} seqio {s[2]:.1f}", flush=True)


def run_corpus(name: str, make_seqs) -> None:
    for inputs_length, targets_length in SETTINGS:
        seqs = make_seqs(inputs_length, targets_length)
        in_tokens = sum(len(i) for i, _ in seqs)
        tg_tokens = sum(len(t) for _, t in seqs)
        print(f"\n== {name} at {inputs_length}/{targets_length}: {len(seqs)} examples, {in_tokens} inputs tokens, "
              f"{tg_tokens} targets tokens", flush=True)
        compare(f"{inputs_length}/{targets_length}", seqs, {"inputs": inputs_length, "targets": targets_length},
                in_tokens, tg_tokens)
        compare(f"decoder {inputs_length + targets_length}", seqs, {"targets": inputs_length + targets_length},
                in_tokens, tg_tokens)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=20_000, help="examples in the synthetic corpus (0: skip)")
    parser.add_argument("--demo", nargs="*", default=[], metavar="IN=DIR",
                        help="reuse demo corpora built at inputs length IN (e.g. 2048=out/demo)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo corpus")
    args = parser.parse_args(argv)
    given = {int(k): v for k, v in (d.split("=", 1) for d in args.demo)}
    with tempfile.TemporaryDirectory(prefix="flanmix_bench_packing_") as tmp:
        if not args.no_demo:
            run_corpus("demo", lambda i, t: demo_sequences(i, t, given.get(i), Path(tmp)))
        if args.synthetic:
            lengths = synthetic_lengths(args.synthetic)
            run_corpus(f"synthetic (Flan-like lognormal, {args.synthetic} examples)",
                       lambda i, t: synthetic_sequences(lengths, i, t))
    return 0


if __name__ == "__main__":
    sys.exit(main())
