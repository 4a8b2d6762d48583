"""The trainer on a real (tiny) corpus built by the Beam job: reading, packing equivalence, training,
exact resume through the CLI, and refusals of mismatched corpora."""
from __future__ import annotations

import dataclasses
import json
import shutil

from trainer_testing import INPUTS_LENGTH, TARGETS_LENGTH, build_test_corpus, copy_corpus

import jax
import numpy as np
import pytest

from pipelines import cli as flanmix_cli
from pipelines.formats.rows import unpack_row
from trainer import data as data_lib
from trainer.config import MODEL_SIZES, TrainConfig
from trainer.errors import CheckpointMismatchError, CorpusError, CorpusMismatchError
from trainer.losses import model_inputs, shift_right_by_segment, token_losses
from trainer.model import build_model
from trainer.train import run

Z_LOSS = 1e-4


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return build_test_corpus(tmp_path_factory.mktemp("trainer_corpus") / "corpus")


@pytest.fixture(scope="module")
def rows(corpus_dir):
    corpus = data_lib.open_corpus(str(corpus_dir))
    return data_lib.read_shard(corpus, corpus.shards[0])


def tiny_config(corpus_dir, out, **overrides) -> TrainConfig:
    base = dict(corpus=str(corpus_dir), out=str(out), model="tiny", steps=20, batch_size=8, learning_rate=3e-3,
                dropout_rate=0.1, z_loss=Z_LOSS, eval_holdout_every=10, eval_every=10, checkpoint_every=10,
                keep_checkpoints=5, log_every=10)
    return TrainConfig(**{**base, **overrides})


# --- reading -------------------------------------------------------------------------------------

def test_parquet_and_tfrecord_shards_read_identically(corpus_dir, rows):
    corpus = data_lib.open_corpus(str(corpus_dir), data_format="tfrecord")
    assert corpus.lengths == {"inputs": INPUTS_LENGTH, "targets": TARGETS_LENGTH}
    from_tfrecord = data_lib.read_shard(corpus, corpus.shards[0])
    assert set(from_tfrecord) == set(rows) == set(data_lib.LAYOUTS["encdec"].feature_names)
    for name, array in rows.items():
        assert array.dtype == np.int32 and array.shape == (corpus.shards[0].num_rows, corpus.feature_length(name))
        np.testing.assert_array_equal(from_tfrecord[name], array)


def test_held_out_rows_are_never_trained_on(corpus_dir):
    corpus = data_lib.open_corpus(str(corpus_dir))
    batches = data_lib.TrainBatches(corpus, batch_size=8, holdout_every=10, seed=0)
    seen = {batches.order.locate(p) for p in range(batches.order.epoch_size)}
    held = {(s, r) for s, shard in enumerate(corpus.shards) for r in range(shard.num_rows) if r % 10 == 0}
    assert len(seen) == batches.order.epoch_size == sum(s.num_rows for s in corpus.shards) - len(held)
    assert not seen & held
    evals = list(data_lib.eval_batches(corpus, 8, 10))
    assert sum(int((b["targets_segment_ids"].max(axis=1) > 0).sum()) for b in evals) == len(held)
    # Two hosts each read half of every global batch; together they read exactly the one-host batch.
    halves = [data_lib.TrainBatches(corpus, 8, 10, 0, process_index=i, process_count=2).batch(3) for i in (0, 1)]
    for name, array in batches.batch(3).items():
        np.testing.assert_array_equal(np.concatenate([h[name] for h in halves]), array)


# --- packing equivalence -------------------------------------------------------------------------

def _alone(inputs, targets, inputs_length, targets_length) -> dict:
    """One example as its own row: segment 1, positions from 0, padded to the given lengths."""
    row = {}
    for side, ids, length in (("inputs", inputs, inputs_length), ("targets", targets, targets_length)):
        n = len(ids)
        row[side] = np.pad(np.asarray(ids, np.int32), (0, length - n))
        row[f"{side}_segment_ids"] = np.pad(np.ones(n, np.int32), (0, length - n))
        row[f"{side}_positions"] = np.pad(np.arange(n, dtype=np.int32), (0, length - n))
    return row


def test_packed_row_loss_equals_token_weighted_loss_of_its_examples_one_by_one(rows):
    """A packed row's loss equals running its examples separately: masks and positions are right."""
    i = int(np.argmax(rows["targets_segment_ids"].max(axis=1)))  # the row with the most examples
    packed = {k: v[i:i + 1] for k, v in rows.items()}
    examples = unpack_row({k: v[0] for k, v in packed.items()})
    assert len(examples) >= 3

    cfg = dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=8064)
    model = build_model(cfg, "encdec")
    params = model.init(jax.random.key(0), **model_inputs("encdec", packed)[0])["params"]

    @jax.jit
    def per_token(batch):
        """(loss per target token incl. z-loss, loss weights), dropout off."""
        kwargs, targets, weights = model_inputs("encdec", batch)
        ce, log_z = token_losses(model.apply({"params": params}, **kwargs), targets)
        return ce + Z_LOSS * log_z ** 2, weights

    loss_packed, w_packed = (np.asarray(a)[0] for a in per_token(packed))
    one_by_one = [per_token({k: v[None] for k, v in _alone(a, b, INPUTS_LENGTH, TARGETS_LENGTH).items()})
                  for a, b in examples]
    loss_alone, w_alone = (np.stack([np.asarray(r[j])[0] for r in one_by_one]) for j in (0, 1))

    seg = packed["targets_segment_ids"][0]
    example_losses, example_tokens = [], []
    for k, (_, targets) in enumerate(examples):
        np.testing.assert_allclose(loss_packed[seg == k + 1], loss_alone[k][:len(targets)], rtol=2e-5, atol=2e-5)
        example_losses.append(float((loss_alone[k] * w_alone[k]).sum() / w_alone[k].sum()))
        example_tokens.append(len(targets))
    packed_loss = float((loss_packed * w_packed).sum() / w_packed.sum())
    weighted = float(np.dot(example_losses, example_tokens) / sum(example_tokens))
    np.testing.assert_allclose(packed_loss, weighted, rtol=1e-6)

    # Without padding at all (each example at its own length) the first example's loss is the same.
    inputs, targets = examples[0]
    exact = {k: v[None] for k, v in _alone(inputs, targets, len(inputs), len(targets)).items()}
    np.testing.assert_allclose(np.asarray(per_token(exact)[0])[0], loss_alone[0][:len(targets)], rtol=2e-5, atol=2e-5)

    # Controls: the test notices a missing segment mask or an unsegmented shift.
    merged = {**packed, **{k: (packed[k] > 0).astype(np.int32) for k in ("inputs_segment_ids", "targets_segment_ids")}}
    loss_merged, _ = per_token(merged)
    assert abs(float((np.asarray(loss_merged)[0] * w_packed).sum() / w_packed.sum()) - packed_loss) > 1e-3
    assert shift_right_by_segment(packed["targets"], packed["targets_segment_ids"]).tolist() != \
        shift_right_by_segment(packed["targets"], merged["targets_segment_ids"]).tolist()


# --- training and resuming -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    """One 20-step tiny run, shared by the resume test and the `flanmix eval --jsonl` tests (do not modify it)."""
    cfg = tiny_config(corpus_dir, tmp_path_factory.mktemp("trained") / "a")
    return cfg, run(cfg, log=lambda line: None)


@pytest.mark.slow  # trains a model: a third of the suite's time (-m 'not slow' skips it)
def test_loss_decreases_and_resume_through_the_cli_is_exact(corpus_dir, trained, tmp_path, capsys):
    cfg, result = trained
    shutil.copytree(cfg.out, tmp_path / "a")
    cfg = dataclasses.replace(cfg, out=str(tmp_path / "a"))
    losses = [h["loss"] for h in result.history]
    assert [h["step"] for h in result.history] == list(range(1, 21))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    evals = [e["eval_loss"] for e in result.evals]
    assert [e["step"] for e in result.evals] == [10, 20] and evals[0] > evals[1], evals
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir() if p.name.isdigit()) == ["10", "20"]

    # Resume from the step-10 checkpoint (in a copy without step 20) with the CLI: steps 11-13 repeat exactly.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "20")
    (tmp_path / "b" / "metrics.jsonl").unlink()
    argv = ["train"]
    for f in dataclasses.fields(cfg):
        argv += [f"--{f.name}", str(getattr(dataclasses.replace(cfg, out=str(tmp_path / "b"), steps=13), f.name))]
    capsys.readouterr()
    assert flanmix_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "flanmix train: config {" in out and '"model": "tiny"' in out
    assert "resumed from" in out and "at step 10" in out
    resumed = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    resumed = {r["step"]: r["loss"] for r in resumed if "loss" in r}
    np.testing.assert_allclose([resumed[s] for s in (11, 12, 13)], losses[10:13], rtol=1e-6, atol=0)

    # The same checkpoint refuses a corpus with another vocabulary (same size, different pieces).
    other = copy_corpus(corpus_dir, tmp_path / "other_vocab", vocabulary={"sha256": "0" * 64})
    with pytest.raises(CheckpointMismatchError, match="vocabulary sha256 .* the corpus uses 0000"):
        run(dataclasses.replace(cfg, corpus=str(other), out=str(tmp_path / "b")), log=lambda line: None)


# --- refusals ------------------------------------------------------------------------------------

def test_mismatched_corpus_layout_vocab_and_lengths_are_refused_clearly(corpus_dir, tmp_path, capsys):
    with pytest.raises(CorpusMismatchError, match="has layout 'encdec' but the run expects layout 'decoder'"):
        data_lib.open_corpus(str(corpus_dir), expect_layout="decoder")
    strange = copy_corpus(corpus_dir, tmp_path / "strange", layout="prefix_lm")
    with pytest.raises(CorpusMismatchError, match="has layout 'prefix_lm'; this trainer reads encdec, decoder"):
        data_lib.open_corpus(str(strange))
    with pytest.raises(CorpusMismatchError, match="has inputs length 256 but the run expects inputs length 512"):
        data_lib.open_corpus(str(corpus_dir), expect_lengths={"inputs": 512, "targets": 0})
    with pytest.raises(CorpusError, match="no tfrecord/ shards"):
        data_lib.open_corpus(str(copy_corpus(corpus_dir, tmp_path / "no_files", files=[])), data_format="tfrecord")

    # Shards whose rows disagree with the manifest's lengths, in both formats.
    lying = copy_corpus(corpus_dir, tmp_path / "lying", sequence_length={"targets": 128})
    for fmt in ("parquet", "tfrecord"):
        corpus = data_lib.open_corpus(str(lying), data_format=fmt)
        with pytest.raises(CorpusMismatchError, match="feature 'targets' has rows of length .*64.* sequence length is 128"):
            data_lib.read_shard(corpus, corpus.shards[0])

    # Through the CLI: a model vocabulary smaller than the corpus'. Refused before anything compiles.
    argv = ["train", "--corpus", str(corpus_dir), "--out", str(tmp_path / "ckpt"), "--model", "tiny", "--vocab_size", "4096"]
    assert flanmix_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "uses a vocabulary of 8000 pieces" in err and "the model has vocab_size 4096" in err
    assert not (tmp_path / "ckpt").exists()


# --- flanmix eval --jsonl --------------------------------------------------------------------------

def _vocab_path(corpus_dir) -> str:
    corpus = data_lib.open_corpus(str(corpus_dir))
    return corpus.vocab_path


@pytest.mark.slow
def test_eval_jsonl_tokenizes_like_the_build_and_scores_per_task_through_the_cli(corpus_dir, trained, tmp_path, capsys):
    import sentencepiece as spm

    from trainer.eval import held_out_examples, jsonl_examples

    cfg, _ = trained
    sp = spm.SentencePieceProcessor(model_file=_vocab_path(corpus_dir))
    corpus = data_lib.open_corpus(str(corpus_dir))
    held = [e for e in held_out_examples(corpus, 10) if len(e[0]) < INPUTS_LENGTH and len(e[1]) < TARGETS_LENGTH][:5]
    assert len(held) == 5 and len({task for _, _, task in held}) >= 2
    lines = []
    for k, (inputs, targets, task) in enumerate(held):
        line = {"inputs": sp.decode(inputs[:-1].tolist()), "targets": sp.decode(targets[:-1].tolist()), "id": k}
        line["task" if k % 2 else "dataset"] = task  # a --format jsonl export names the task "dataset"
        lines.append(line)
    lines.append({"inputs": "word " * 400, "targets": "x " * 100})  # both sides overlong; no task: "unknown"
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")  # a blank line is skipped

    # The text goes back to the build's token ids: EOS appended, overlong sides cut to the run's lengths.
    examples, cut = jsonl_examples(str(path), _vocab_path(corpus_dir), INPUTS_LENGTH, TARGETS_LENGTH)
    for (inputs, targets, task), (ids_in, ids_tg, task_in) in zip(held, examples):
        assert ids_in.tolist() == inputs.tolist() and ids_tg.tolist() == targets.tolist() and task_in == task
    assert cut == {"inputs": 1, "targets": 1} and examples[-1][2] == "unknown"
    assert len(examples[-1][0]) == INPUTS_LENGTH and examples[-1][0][-1] == 1 and len(examples[-1][1]) == TARGETS_LENGTH

    out = tmp_path / "eval.json"
    assert flanmix_cli.main(["eval", "--checkpoint", cfg.out, "--jsonl", str(path), "--out", str(out),
                             "--batch_size", "4"]) == 0
    result = json.loads(out.read_text())
    tasks = {}
    for _, _, task in held:
        tasks[task] = tasks.get(task, 0) + 1
    assert {t: v["examples"] for t, v in result["per_task"].items()} == {**tasks, "unknown": 1}
    assert result["examples"] == 6 and result["step"] == 20 and result["jsonl"] == str(path)
    assert result["truncated"] == {"inputs": 1, "targets": 1} and result["max_decode_length"] == TARGETS_LENGTH
    assert 0.0 <= result["exact_match"] <= 1.0
    assert f"examples of {path}" in capsys.readouterr().out


def test_exact_match_compares_greedy_output_with_targets_up_to_eos(corpus_dir, trained):
    """`score` (shared by corpus and JSONL eval): the model's own greedy output as target is a hit, one
    changed token a miss, per task."""
    import jax.numpy as jnp

    from trainer.decode import greedy_decode
    from trainer.eval import held_out_examples, load_run, score

    cfg, _ = trained
    params, _, _, model_cfg = load_run(cfg.out)
    corpus = data_lib.open_corpus(str(corpus_dir))
    inputs = held_out_examples(corpus, 10, limit=1)[0][0]
    tokens = np.zeros((1, INPUTS_LENGTH), np.int32)
    tokens[0, :len(inputs)] = inputs
    predicted = np.asarray(greedy_decode(params, model_cfg, jnp.asarray(tokens), jnp.asarray((tokens > 0).astype(np.int32)),
                                         8)[0])[0].tolist()
    own = np.asarray(predicted[:predicted.index(1) + 1] if 1 in predicted else predicted, np.int32)
    other = own.copy()
    other[0] = other[0] + 1
    result = score(params, model_cfg, [(inputs, own, "a"), (inputs, other, "a"), (inputs, own, "b")], INPUTS_LENGTH, 8, 2)
    assert result["examples"] == 3 and result["exact_match"] == pytest.approx(2 / 3)
    assert result["per_task"] == {"a": {"examples": 2, "exact_match": 0.5}, "b": {"examples": 1, "exact_match": 1.0}}


@pytest.mark.parametrize("line,message", [
    ('{"inputs": "a", "targets": "b"', "not JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"inputs": "a"}', 'no "targets" field (fields: inputs)'),
    ('{"inputs": 3, "targets": "b"}', '"inputs" must be a string, got int'),
    ('{"inputs": "a", "targets": "b", "task": 7}', '"task" must be a non-empty string'),
])
def test_eval_jsonl_bad_line_is_one_line_error_with_file_and_line(corpus_dir, tmp_path, line, message):
    from trainer.errors import ConfigError
    from trainer.eval import jsonl_examples

    path = tmp_path / "bad.jsonl"
    path.write_text('{"inputs": "fine", "targets": "ok"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        jsonl_examples(str(path), _vocab_path(corpus_dir), INPUTS_LENGTH, TARGETS_LENGTH)
    assert str(info.value).startswith(f"{path}:3: ") and message in str(info.value) and "\n" not in str(info.value)
