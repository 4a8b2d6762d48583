"""Resuming refuses what would corrupt a run; Adafactor factors attention kernels by their 2-D view."""
from __future__ import annotations

import dataclasses
import json

import trainer_testing  # noqa: F401  (must come first: makes `trainer` the package under test)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trainer.config import MODEL_SIZES, TrainConfig
from trainer.errors import CheckpointMismatchError
from trainer.model import build_model
from trainer.train import make_optimizer, run


@pytest.mark.slow
def test_resume_refuses_changed_seed_batch_size_holdout_and_corpus(tmp_path):
    from test_trainer_units import write_decoder_corpus

    corpus = write_decoder_corpus(tmp_path / "corpus")
    cfg = TrainConfig(corpus=str(corpus), out=str(tmp_path / "out"), model="tiny", steps=1, batch_size=2,
                      eval_holdout_every=3, log_every=1)
    run(cfg, log=lambda line: None)
    for change, pattern in ((dict(seed=1), "--seed 0; this run has --seed 1"),
                            (dict(batch_size=4), "--batch_size 2; this run has --batch_size 4"),
                            (dict(eval_holdout_every=2), "--eval_holdout_every 3; this run has --eval_holdout_every 2")):
        with pytest.raises(CheckpointMismatchError, match=pattern):
            run(dataclasses.replace(cfg, steps=2, **change), log=lambda line: None)
    # The same corpus with one row fewer in its shard's manifest entry is another corpus.
    other = tmp_path / "other"
    import shutil

    shutil.copytree(corpus, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["files"].append({"path": "parquet/extra-00000-of-00001.parquet", "num_rows": 6})
    shutil.copyfile(other / "parquet" / "d-00000-of-00001.parquet", other / "parquet" / "extra-00000-of-00001.parquet")
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointMismatchError, match="was trained on another corpus"):
        run(dataclasses.replace(cfg, corpus=str(other), steps=2), log=lambda line: None)
    # The unchanged config still resumes.
    assert run(dataclasses.replace(cfg, steps=2), log=lambda line: None).first_step == 1


def test_adafactor_factors_attention_kernels_by_their_2d_view():
    # small's attention shapes (d_model 512, 6 heads of 64); one layer a side and a short vocabulary keep the
    # jitted update cheap (the kernels' shapes, which decide the factoring, are the same).
    cfg = dataclasses.replace(MODEL_SIZES["small"], vocab_size=128, num_encoder_layers=1, num_decoder_layers=1)
    model = build_model(cfg, "encdec")
    x = jnp.zeros((1, 8), jnp.int32)
    from flax import linen as nn

    params = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), x, x, x, x)["params"]))
    state = jax.eval_shape(make_optimizer(TrainConfig(corpus="c", out="o")).init, params)
    factored = state[0]  # optax.adafactor: chain of (scale_by_factored_rms, ...); the first holds v_row/v_col/v
    query = ("encoder", "layer_0", "self_attention", "query")
    out = ("encoder", "layer_0", "self_attention", "out")

    def get(tree, path):
        for p in path:
            tree = tree[p]
        return tree

    # (512, 6, 64) is factored as its (512, 384) view: row and column statistics, no full second moment.
    for kernel in (query, out):
        assert sorted([get(factored.v_row, kernel).shape, get(factored.v_col, kernel).shape]) == [(384,), (512,)]
        assert get(factored.v, kernel).shape == (1,)
    assert get(factored.v, ("encoder", "final_norm", "scale")).shape == (512,)  # vectors keep full moments
    # An update keeps each parameter's own shape.
    tx = make_optimizer(TrainConfig(corpus="c", out="o"))
    small = jax.tree.map(lambda s: np.full(s.shape, 0.01, np.float32), params)
    updates, _ = jax.jit(tx.update)(small, tx.init(small), small)
    assert get(updates, query).shape == (512, 6, 64)
