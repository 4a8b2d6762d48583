"""Memory features: gradient accumulation and rematerialization change memory, not results; the
pre-flight estimate refuses a step that cannot fit, naming the estimate, the device memory and flags."""
from __future__ import annotations

import dataclasses
import functools

import trainer_testing  # noqa: F401  (must come first: makes `trainer` the package under test)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from trainer.config import MODEL_SIZES, TrainConfig
from trainer.losses import model_inputs
from trainer.model import build_model
from trainer.train import make_optimizer, train_step


def _batch(rows=4, length=24, seed=0):
    rng = np.random.default_rng(seed)
    seg = np.ones((rows, length), np.int32)
    seg[:, length // 2:] = 2
    seg[1, -5:] = 0  # some padding: micro-batches hold different token counts
    targets = np.where(seg > 0, rng.integers(2, 100, (rows, length)), 0).astype(np.int32)
    loss_mask = (rng.random((rows, length)) < 0.6).astype(np.int32)
    return {"targets": targets, "targets_segment_ids": seg, "targets_positions": np.zeros_like(seg), "loss_mask": loss_mask}


CFG = dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=128, dropout_rate=0.0)


def _params(batch):
    kwargs, _, _ = model_inputs("decoder", batch)
    return nn.unbox(jax.jit(build_model(CFG, "decoder").init)(jax.random.key(0), **kwargs)["params"])


def _step(remat: str, grad_accum: int, batch, params, steps=2):
    model = build_model(dataclasses.replace(CFG, remat=remat), "decoder")
    tx = make_optimizer(TrainConfig(corpus="c", out="o"))
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}
    fn = jax.jit(functools.partial(train_step, model=model, tx=tx, layout="decoder", z_loss=1e-4, grad_accum=grad_accum))
    losses = []
    for _ in range(steps):
        state, metrics = fn(state, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
    return losses, state["params"]


@pytest.mark.slow
def test_grad_accum_and_remat_give_the_same_updates_as_the_whole_batch():
    batch = _batch()
    init = _params(batch)
    base_losses, base_params = _step("none", 1, batch, init)
    # Each policy and two accumulation factors, three compiled steps (accumulation and remat are independent).
    for remat, accum in (("full", 2), ("dots", 4)):
        losses, params = _step(remat, accum, batch, init)
        np.testing.assert_allclose(losses, base_losses, rtol=1e-5, err_msg=f"{remat} x{accum}")
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(base_params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert base_losses[1] != base_losses[0]  # the second step saw updated parameters


@pytest.mark.slow
def test_a_step_that_cannot_fit_is_refused_with_estimate_device_memory_and_flags(tmp_path):
    from test_trainer_units import write_decoder_corpus

    from trainer.memory import MemoryError_
    from trainer.train import run

    corpus = write_decoder_corpus(tmp_path / "corpus")
    cfg = TrainConfig(corpus=str(corpus), out=str(tmp_path / "out"), model="tiny", steps=1, batch_size=4,
                      remat="none", grad_accum=1, memory_limit_gb=2e-3)  # 2 MiB: parameters fit, activations do not
    with pytest.raises(MemoryError_) as info:
        run(cfg, log=lambda line: None)
    message = str(info.value)
    assert "the train step would not fit: estimate" in message and "of 0.00 GiB (--memory_limit_gb)" in message
    assert "--remat full" in message and "--grad_accum" in message
