"""`flanmix eval --checkpoint OUT [--corpus DIR | --jsonl FILE] --out results.json`: greedy decoding and exact match.

The rows are the ones `flanmix train` held out for eval loss (row i of each shard with
i % --eval_holdout_every == 0, the run's own rule by default), so nothing scored was trained on.
Each packed row is split into its examples by segment id; every example's inputs are decoded greedily
(`trainer.decode`, KV cache) up to the corpus' targets length, and the prediction is an exact match
when its tokens up to EOS equal the example's targets. Per-task accuracy groups examples by the
dataset named in the row's `provenance` column (parquet shards; "unknown" without it).

With `--jsonl FILE` the examples come from a JSON Lines file instead, one object per line:

    {"inputs": "Translate to German: ...", "targets": "...", "task": "wmt16_translate_de_en"}

`inputs` and `targets` (strings) are required; `task` (string) is optional and falls back to
`dataset` (so a `flanmix build --format jsonl` export is read as it is), else "unknown"; other fields
are ignored. Texts are tokenized with the run's corpus vocabulary (`--vocab` overrides; its sha256
must be the run's) and end with EOS; inputs and targets longer than the run's lengths are cut as the
build cuts them (keep the beginning, end with EOS) and counted. A line that is not such an object
stops the command with FILE:LINE and what is wrong, before anything is decoded. Blank lines are skipped.

Written JSON: {"checkpoint", "step", "corpus" or "jsonl", "examples", "exact_match", "per_task":
{task: {"examples", "exact_match"}}, "max_decode_length"} plus "holdout_every" (corpus) or
"truncated": {"inputs", "targets"} (JSONL).
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--corpus", default="", help="corpus directory whose held-out rows are scored (default: the run's)")
    source.add_argument("--jsonl", default="", help='JSON Lines file of {"inputs": str, "targets": str, "task": str '
                                                    '(optional)} to score instead of corpus rows (default: none)')
    parser.add_argument("--vocab", default="", help="SentencePiece model for --jsonl (default: the run's corpus "
                                                    "vocabulary; must have the run's sha256)")
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


def jsonl_examples(path: str, vocab_path: str, inputs_length: int, targets_length: int, limit: int = 0):
    """(examples as (inputs ids, target ids, task), {"inputs": n cut, "targets": n cut}) of a JSON Lines file.

    Every line is checked before any is tokenized, so a bad line 9,000 costs no decoding; the error
    names FILE:LINE and the field."""
    import sentencepiece as spm

    records = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--jsonl {path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{where}: expected a JSON object with \"inputs\" and \"targets\", got "
                                  f"{type(record).__name__}")
            for name in ("inputs", "targets"):
                if name not in record:
                    raise ConfigError(f"{where}: no \"{name}\" field (fields: {', '.join(sorted(record)) or 'none'})")
                if not isinstance(record[name], str):
                    raise ConfigError(f"{where}: \"{name}\" must be a string, got {type(record[name]).__name__}")
            task = record.get("task", record.get("dataset", "unknown"))
            if not isinstance(task, str) or not task:
                raise ConfigError(f"{where}: \"task\" must be a non-empty string, got {task!r}")
            records.append((record["inputs"], record["targets"], task))
            if limit and len(records) >= limit:
                break
    if not records:
        raise ConfigError(f"--jsonl {path}: no examples (empty file)")
    sp = spm.SentencePieceProcessor(model_file=vocab_path)
    inputs = sp.encode([r[0] for r in records], out_type=int)
    targets = sp.encode([r[1] for r in records], out_type=int)
    cut = {"inputs": 0, "targets": 0}

    def fit(ids, length, side):  # the build's cut: keep the beginning, end with EOS
        from trainer.decode import EOS

        if len(ids) + 1 > length:
            cut[side] += 1
            ids = ids[:length - 1]
        return np.asarray(list(ids) + [EOS], np.int32)

    examples = [(fit(i, inputs_length, "inputs"), fit(t, targets_length, "targets"), r[2])
                for i, t, r in zip(inputs, targets, records)]
    return examples, cut


def file_sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def score(params, cfg, examples, inputs_length: int, decode_length: int, batch_size: int) -> dict:
    """Greedy-decode every example's inputs and compare with its targets up to EOS: overall and per-task
    exact match. Batches are padded to `batch_size` so one program serves every batch."""
    import jax.numpy as jnp

    from trainer.decode import EOS, greedy_decode

    hits, per_task = [], defaultdict(list)
    batch_size = max(min(batch_size, len(examples)), 1)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        rows = len(chunk)
        chunk = chunk + [chunk[-1]] * (batch_size - rows)  # one compiled shape for every batch
        tokens = np.zeros((batch_size, inputs_length), np.int32)
        segments = np.zeros((batch_size, inputs_length), np.int32)
        for i, (inputs, _, _) in enumerate(chunk):
            tokens[i, :len(inputs)], segments[i, :len(inputs)] = inputs, 1
        predicted, _ = greedy_decode(params, cfg, jnp.asarray(tokens), jnp.asarray(segments), decode_length)
        predicted = np.asarray(predicted)
        for i, (_, targets, task) in enumerate(chunk[:rows]):
            row = predicted[i].tolist()
            row = row[:row.index(EOS) + 1] if EOS in row else row
            hit = row == targets.tolist()
            hits.append(hit)
            per_task[task].append(hit)
    return {
        "examples": len(hits), "exact_match": float(np.mean(hits)) if hits else 0.0,
        "per_task": {t: {"examples": len(v), "exact_match": float(np.mean(v))} for t, v in sorted(per_task.items())},
    }


def load_run(checkpoint: str):
    """(params, meta, step, model config) of an encoder-decoder `flanmix train` run."""
    from trainer.export import model_config_from_meta, restore_params

    params, meta, step = restore_params(checkpoint)
    if meta["layout"] != "encdec":
        raise ConfigError(f"{checkpoint} is a {meta['layout']} model; flanmix eval decodes encoder-decoder models only")
    return params, meta, step, model_config_from_meta(meta)


def evaluate_jsonl(checkpoint: str, jsonl: str, vocab: str = "", max_examples: int = 0, batch_size: int = 16,
                   max_decode_length: int = 0) -> dict:
    """Exact match of greedy decoding on the examples of a JSON Lines file (see the module docstring)."""
    from trainer.export import vocab_path_of_run

    params, meta, step, cfg = load_run(checkpoint)
    vocab_path = vocab or vocab_path_of_run(checkpoint, meta)
    if not vocab_path:
        raise ConfigError(f"cannot find the vocabulary of {checkpoint} (its corpus or the corpus' manifest is gone); "
                          "pass --vocab PATH/spiece.model")
    if not os.path.exists(vocab_path):
        raise ConfigError(f"--vocab {vocab_path}: no such file")
    expected = meta["vocabulary"]["sha256"]
    if file_sha256(vocab_path) != expected:
        raise ConfigError(f"vocabulary {vocab_path} has sha256 {file_sha256(vocab_path)[:12]}; {checkpoint} was trained "
                          f"with {expected[:12]} (token ids would mean different pieces)")
    lengths = meta["sequence_length"]
    length = max_decode_length or int(lengths["targets"])
    # Targets are cut at the run's targets length, as the build cuts them, not at a shorter decode length
    # (a prefix of a long answer is not a match; the same rule as corpus rows).
    examples, cut = jsonl_examples(jsonl, vocab_path, int(lengths["inputs"]), int(lengths["targets"]), max_examples)
    result = score(params, cfg, examples, int(lengths["inputs"]), length, batch_size)
    return {"checkpoint": checkpoint, "step": step, "jsonl": jsonl, **result, "max_decode_length": length,
            "truncated": cut}


def evaluate_checkpoint(checkpoint: str, corpus_dir: str = "", holdout_every: int = 0, max_examples: int = 0,
                        batch_size: int = 16, max_decode_length: int = 0) -> dict:
    """Exact match of greedy decoding on the run's held-out corpus rows."""
    from trainer import data as data_lib

    params, meta, step, cfg = load_run(checkpoint)
    train_cfg = meta.get("train_config") or {}
    corpus_dir = corpus_dir or train_cfg.get("corpus", "")
    holdout_every = holdout_every or int(train_cfg.get("eval_holdout_every") or 0)
    if holdout_every <= 0:
        raise ConfigError("no holdout rule: the run trained on every row; pass --eval_holdout_every N")
    corpus = data_lib.open_corpus(corpus_dir, train_cfg.get("data_format", "parquet"), "encdec")
    if corpus.vocab_sha256 != meta["vocabulary"]["sha256"]:
        raise ConfigError(f"corpus {corpus_dir} uses vocabulary {corpus.vocab_sha256[:12]}; {checkpoint} was trained "
                          f"with {meta['vocabulary']['sha256'][:12]}")
    length = max_decode_length or corpus.lengths["targets"]
    examples = held_out_examples(corpus, holdout_every, max_examples)
    result = score(params, cfg, examples, corpus.lengths["inputs"], length, batch_size)
    return {"checkpoint": checkpoint, "step": step, "corpus": corpus_dir, **result, "holdout_every": holdout_every,
            "max_decode_length": length}


def cmd_eval(args: argparse.Namespace) -> int:
    if args.vocab and not args.jsonl:
        raise ConfigError("--vocab is for --jsonl (corpus rows are already token ids)")
    if args.jsonl:
        result = evaluate_jsonl(args.checkpoint, args.jsonl, args.vocab, args.max_examples, args.batch_size,
                                args.max_decode_length)
        source = f"examples of {args.jsonl}"
    else:
        result = evaluate_checkpoint(args.checkpoint, args.corpus, args.eval_holdout_every, args.max_examples,
                                     args.batch_size, args.max_decode_length)
        source = "held-out examples"
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    print(f"flanmix eval: step {result['step']}: exact match {result['exact_match']:.4f} over {result['examples']} "
          f"{source} ({len(result['per_task'])} tasks) -> {args.out}")
    return 0
