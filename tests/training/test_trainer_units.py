"""Trainer pieces on literal fixtures: decoder inputs, masks, buckets, sizes, batch order, configs."""
from __future__ import annotations

import dataclasses

import trainer_testing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer.config import MODEL_SIZES, TrainConfig, resolve_model_config
from trainer.data import RowOrder
from trainer.errors import ConfigError
from trainer.losses import model_inputs, shift_right_by_segment, token_losses
from trainer.metrics import peak_flops, train_flops_per_row
from trainer.model import build_model, relative_position_bucket, segment_mask, toeplitz


def test_trainer_is_the_real_package():
    import trainer

    assert trainer.__file__ == str(trainer_testing.ROOT / "trainer" / "__init__.py")


def test_decoder_inputs_restart_at_every_segment():
    targets = jnp.array([[5, 1, 17, 1, 0], [8, 9, 1, 4, 1]])
    segments = jnp.array([[1, 1, 2, 2, 0], [1, 1, 1, 2, 2]])
    assert shift_right_by_segment(targets, segments).tolist() == [[0, 5, 0, 17, 0], [0, 8, 9, 0, 4]]


def test_segment_mask_separates_examples_and_padding():
    seg = jnp.array([[1, 1, 2, 0]])
    assert segment_mask(seg, seg)[0, 0].astype(int).tolist() == [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0],
    ]


def test_relative_position_buckets_match_t5():
    rel = np.array([-200, -20, -3, 0, 3, 20, 200])
    assert relative_position_bucket(rel, True, 32, 128).tolist() == [15, 10, 3, 0, 19, 26, 31]
    assert relative_position_bucket(rel, False, 32, 128).tolist() == [31, 17, 3, 0, 0, 0, 0]


@pytest.mark.parametrize("q_len,k_len", [(1, 1), (1, 5), (5, 1), (3, 7), (7, 3), (4, 4)])
def test_toeplitz_lays_out_one_value_per_distance(q_len, k_len):
    values = np.arange(q_len + k_len - 1) * 10 + 1  # value for distance d = k - q is at d + q_len - 1
    expected = [[values[j - i + q_len - 1] for j in range(k_len)] for i in range(q_len)]
    assert toeplitz(jnp.stack([values, -values]), q_len, k_len).tolist() == [expected, (-np.array(expected)).tolist()]


@pytest.mark.parametrize("size,expected", [("small", 76_961_152), ("base", 247_577_856)])
def test_model_sizes_match_published_t5_1_1(size, expected):
    """With T5's 32128-row vocabulary the parameter counts equal the released t5-v1_1 checkpoints'."""
    cfg = dataclasses.replace(MODEL_SIZES[size], vocab_size=32128)
    model = build_model(cfg, "encdec")
    x = jnp.zeros((1, 8), jnp.int32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, x, x, x))
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes)) == expected


def test_model_config_takes_vocabulary_from_corpus_and_dtype_from_backend():
    cfg = TrainConfig(corpus="c", out="o", model="tiny")
    cpu = resolve_model_config(cfg, corpus_vocab_size=8000, backend="cpu")
    gpu = resolve_model_config(cfg, corpus_vocab_size=8000, backend="gpu")
    assert (cpu.vocab_size, cpu.activation_dtype, gpu.activation_dtype) == (8064, "float32", "bfloat16")
    assert cpu.dropout_rate == 0.1


def test_bad_options_are_refused_with_their_values():
    with pytest.raises(ConfigError, match="model 'huge' is not one of auto, tiny, small, base, large, xl, xxl"):
        TrainConfig(corpus="c", out="o", model="huge")
    with pytest.raises(ConfigError, match=r"batch_size must be at least 1 \(got 0\)"):
        TrainConfig(corpus="c", out="o", batch_size=0)


def test_mfu_inputs():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and peak_flops("cpu") is None
    cfg = dataclasses.replace(MODEL_SIZES["base"], vocab_size=32128)
    # 6 x params x tokens, where encoder weights see the 512 inputs and decoder + output weights the 128
    # targets; attention scores and cross-attention keys/values over the inputs add the rest.
    flops = train_flops_per_row(cfg, "encdec", {"inputs": 512, "targets": 128})
    encoder, decoder, output = 12 * 7_079_424, 12 * 9_439_488, 768 * 32128
    assert 1.0 < flops / (6 * (encoder * 512 + (decoder + output) * 128)) < 1.25


def test_row_order_is_keyed_holds_out_and_covers_each_epoch_once():
    order = RowOrder([7, 5], holdout_every=3, seed=1)
    assert order.epoch_size == 7  # shard 0 holds out rows 0, 3, 6; shard 1 rows 0, 3
    epoch = [order.locate(p) for p in range(7)]
    assert sorted(epoch) == [(0, 1), (0, 2), (0, 4), (0, 5), (1, 1), (1, 2), (1, 4)]
    assert [RowOrder([7, 5], 3, seed=1).locate(p) for p in range(14)] == [order.locate(p) for p in range(14)]
    assert [order.locate(p) for p in range(7, 14)] != epoch  # a new epoch, a new order
    assert [RowOrder([7, 5], 3, seed=2).locate(p) for p in range(7)] != epoch


def _pack_decoder(examples, length):
    """Decoder-layout row(s) by hand: each example is prompt + answer, loss on the answer."""
    row = {k: np.zeros(length, np.int32) for k in ("targets", "targets_segment_ids", "targets_positions", "loss_mask")}
    at = 0
    for seg, (prompt, answer) in enumerate(examples, start=1):
        tokens = prompt + answer
        n = len(tokens)
        row["targets"][at:at + n] = tokens
        row["targets_segment_ids"][at:at + n] = seg
        row["targets_positions"][at:at + n] = np.arange(n)
        row["loss_mask"][at + len(prompt):at + n] = 1
        at += n
    return {k: v[None] for k, v in row.items()}


def test_decoder_only_packed_row_equals_its_examples_one_by_one():
    cfg = dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=128)
    model = build_model(cfg, "decoder")
    rng = np.random.default_rng(0)
    examples = [(rng.integers(3, 128, n).tolist() + [1], rng.integers(3, 128, m).tolist() + [1])
                for n, m in ((5, 3), (9, 6), (2, 4))]
    packed = _pack_decoder(examples, 40)
    alone = {k: np.concatenate([_pack_decoder([e], 40)[k] for e in examples]) for k in packed}
    kwargs, _, _ = model_inputs("decoder", packed)
    params = model.init(jax.random.key(0), **kwargs)["params"]

    @jax.jit
    def losses(batch):
        kw, targets, weights = model_inputs("decoder", batch)
        ce, _ = token_losses(model.apply({"params": params}, **kw), targets)
        return ce, weights

    ce_packed, w_packed = losses(packed)
    ce_alone, w_alone = losses(alone)
    for i, (prompt, answer) in enumerate(examples):
        seg = packed["targets_segment_ids"][0] == i + 1
        n = len(prompt) + len(answer)
        np.testing.assert_allclose(np.asarray(ce_packed)[0][seg], np.asarray(ce_alone)[i][:n], rtol=1e-5, atol=1e-5)
    assert float(w_packed.sum()) == float(w_alone.sum()) == sum(len(a) for _, a in examples)
    np.testing.assert_allclose(float((ce_packed * w_packed).sum() / w_packed.sum()),
                               float((ce_alone * w_alone).sum() / w_alone.sum()), rtol=1e-6)


def write_decoder_corpus(root):
    """A hand-written corpus in the "decoder" layout: manifest + one parquet shard of 6 rows of length 32,
    each row 3 examples of a 6-token prompt and a 4-token answer (EOS included)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    rows = [_pack_decoder([(rng.integers(3, 100, 5).tolist() + [1], rng.integers(3, 100, 3).tolist() + [1])
                           for _ in range(3)], 32) for _ in range(6)]
    names = ("targets", "targets_segment_ids", "targets_positions", "loss_mask")
    table = pa.table({n: pa.array([r[n][0].tolist() for r in rows], pa.list_(pa.int32())) for n in names})
    (root / "parquet").mkdir(parents=True)
    pq.write_table(table, root / "parquet" / "d-00000-of-00001.parquet")
    manifest = {"layout": "decoder", "sequence_length": {"targets": 32},
                "vocabulary": {"vocab_size": 100, "sha256": "ab" * 32, "path": "test"},
                "files": [{"path": "parquet/d-00000-of-00001.parquet", "num_rows": 6}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


MESH_SCRIPT = """
import json, sys
from trainer.config import TrainConfig
from trainer.train import run
import jax
assert len(jax.devices()) == 4
r = run(TrainConfig(**json.loads(sys.argv[1])), log=lambda line: None)
print(json.dumps([h["loss"] for h in r.history]))
"""


@pytest.mark.slow  # trains a model: a third of the suite's time (-m 'not slow' skips it)
def test_decoder_layout_corpus_trains_and_a_2x2_mesh_gives_the_same_losses(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from trainer.config import TrainConfig
    from trainer.train import run

    corpus = write_decoder_corpus(tmp_path / "corpus")
    cfg = TrainConfig(corpus=str(corpus), out=str(tmp_path / "out"), model="tiny", steps=3, batch_size=2,
                      eval_holdout_every=3, eval_every=0, log_every=1)
    lines = []
    result = run(cfg, log=lines.append)
    assert [h["step"] for h in result.history] == [1, 2, 3]
    assert all(h["loss_tokens"] == 2 * 3 * 4 for h in result.history)  # 2 rows x 3 examples x 4 answer tokens
    assert result.evals[0]["eval_tokens"] == 2 * 12  # rows 0 and 3 are held out
    assert any("layout decoder" in line for line in lines)

    # The same run on 4 (simulated) devices as a data=2 x model=2 mesh: same losses up to summation order.
    mesh_cfg = dataclasses.replace(cfg, out=str(tmp_path / "out_mesh"), model_parallelism=2)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(trainer_testing.ROOT)}
    proc = subprocess.run([sys.executable, "-c", MESH_SCRIPT, json.dumps(dataclasses.asdict(mesh_cfg))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mesh_losses = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(mesh_losses, [h["loss"] for h in result.history], rtol=1e-5)
