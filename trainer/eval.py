"""`flanmix eval --checkpoint OUT --corpus DIR --out results.json`: greedy decoding on held-out rows.

The rows are the ones `flanmix train` held out for eval loss (row i of each shard with
i % --eval_holdout_every == 0, the run's own rule by default), so nothing scored was trained on.
Each packed row is split into its examples by segment id; every example's inputs are decoded greedily
(`trainer.decode`, KV cache) up to the corpus' targets length, and the prediction is an exact match
when its tokens up to EOS equal the example's targets. Per-task accuracy groups examples by the
dataset named in the row's `provenance` column (parquet shards; "unknown" without it).

Written JSON: {"checkpoint", "step", "corpus", "examples", "exact_match", "per_task": {dataset:
{"examples", "exact_match"}}, "holdout_every", "max_decode_length"}.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

import numpy as np

from trainer.errors import ConfigError


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="greedy-decode held-out rows and score exact match per task",
                                   description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True, help="the --out directory of `flanmix train`")
    parser.add_argument("--corpus", default="", help="corpus directory (default: the run's)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--eval_holdout_every", type=int, default=0, help="holdout rule (default: the run's)")
    parser.add_argument("--max_examples", type=int, default=0, help="score at most this many examples (default 0 = all)")
    parser.add_argument("--batch_size", type=int, default=16, help="examples decoded together (default 16)")
    parser.add_argument("--max_decode_length", type=int, default=0, help="longest target to decode (default 0 = the corpus targets length)")
    return parser


def held_out_examples(corpus, holdout_every: int, limit: int = 0):
    """(inputs ids, target ids, task) of every example in the held-out rows, in shard and row order."""
    import pyarrow.parquet as pq

    from trainer import data as data_lib

    out = []
    for shard in corpus.shards:
        rows = data_lib.read_shard(corpus, shard)
        provenance = None
        if corpus.data_format == "parquet":
            table = pq.read_table(shard.path)
            if "provenance" in table.column_names:
                provenance = table.column("provenance").to_pylist()
        for r in range(shard.num_rows):
            if not data_lib.held_out(r, holdout_every):
                continue
            segments = sorted(set(rows["targets_segment_ids"][r].tolist()) - {0})
            for i, seg in enumerate(segments):
                inputs = rows["inputs"][r][rows["inputs_segment_ids"][r] == seg]
                targets = rows["targets"][r][rows["targets_segment_ids"][r] == seg]
                task = provenance[r][i].split("|", 1)[0] if provenance and i < len(provenance[r]) else "unknown"
                out.append((inputs, targets, task))
                if limit and len(out) >= limit:
                    return out
    return out


def evaluate_checkpoint(checkpoint: str, corpus_dir: str = "", holdout_every: int = 0, max_examples: int = 0,
                        batch_size: int = 16, max_decode_length: int = 0) -> dict:
    import jax.numpy as jnp

    from trainer import data as data_lib
    from trainer.decode import EOS, greedy_decode
    from trainer.export import model_config_from_meta, restore_params

    params, meta, step = restore_params(checkpoint)
    if meta["layout"] != "encdec":
        raise ConfigError(f"{checkpoint} is a {meta['layout']} model; flanmix eval decodes encoder-decoder models only")
    train_cfg = meta.get("train_config") or {}
    corpus_dir = corpus_dir or train_cfg.get("corpus", "")
    holdout_every = holdout_every or int(train_cfg.get("eval_holdout_every") or 0)
    if holdout_every <= 0:
        raise ConfigError("no holdout rule: the run trained on every row; pass --eval_holdout_every N")
    corpus = data_lib.open_corpus(corpus_dir, train_cfg.get("data_format", "parquet"), "encdec")
    if corpus.vocab_sha256 != meta["vocabulary"]["sha256"]:
        raise ConfigError(f"corpus {corpus_dir} uses vocabulary {corpus.vocab_sha256[:12]}; {checkpoint} was trained "
                          f"with {meta['vocabulary']['sha256'][:12]}")
    cfg = model_config_from_meta(meta)
    length = max_decode_length or corpus.lengths["targets"]
    examples = held_out_examples(corpus, holdout_every, max_examples)
    in_len = corpus.lengths["inputs"]
    hits, per_task = [], defaultdict(list)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        rows = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_size - rows)  # one compiled shape for every batch
        tokens = np.zeros((batch_size, in_len), np.int32)
        segments = np.zeros((batch_size, in_len), np.int32)
        for i, (inputs, _, _) in enumerate(chunk):
            tokens[i, :len(inputs)], segments[i, :len(inputs)] = inputs, 1
        predicted, _ = greedy_decode(params, cfg, jnp.asarray(tokens), jnp.asarray(segments), length)
        predicted = np.asarray(predicted)
        for i, (_, targets, task) in enumerate(chunk[:rows]):
            row = predicted[i].tolist()
            row = row[:row.index(EOS) + 1] if EOS in row else row
            hit = row == targets.tolist()
            hits.append(hit)
            per_task[task].append(hit)
    return {
        "checkpoint": checkpoint, "step": step, "corpus": corpus_dir, "examples": len(hits),
        "exact_match": float(np.mean(hits)) if hits else 0.0,
        "per_task": {t: {"examples": len(v), "exact_match": float(np.mean(v))} for t, v in sorted(per_task.items())},
        "holdout_every": holdout_every, "max_decode_length": length,
    }


def cmd_eval(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, args.corpus, args.eval_holdout_every, args.max_examples,
                                 args.batch_size, args.max_decode_length)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    print(f"flanmix eval: step {result['step']}: exact match {result['exact_match']:.4f} over {result['examples']} "
          f"held-out examples ({len(result['per_task'])} tasks) -> {args.out}")
    return 0
