"""From packed corpus rows to model inputs, and the loss: cross-entropy on target tokens only.

Decoder inputs are the targets shifted right by one *within each segment*: every segment starts with
0 (the T5 start token, which is also pad) instead of the last token of the previous example.

    targets              5  1 17  1  0      (two examples packed, then padding)
    targets_segment_ids  1  1  2  2  0
    decoder inputs       0  5  0 17  0

Loss weights: 1 on every non-padding target token (segment id > 0); the "decoder" layout further
multiplies by its `loss_mask` (0 on prompt tokens). The loss of a batch is the sum of per-token losses
divided by the sum of weights, so a packed row weighs each example by its number of target tokens,
exactly like running the examples one by one and averaging their tokens.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp


def shift_right_by_segment(targets: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Decoder input tokens: targets shifted right, with 0 at the start of every segment (see module doc)."""
    shifted = jnp.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    previous_segment = jnp.pad(segment_ids, ((0, 0), (1, 0)))[:, :-1]
    return jnp.where(segment_ids == previous_segment, shifted, 0)


def model_inputs(layout: str, batch: Mapping[str, jax.Array]) -> tuple[dict, jax.Array, jax.Array]:
    """(keyword arguments for the model, target ids, loss weights) for a batch of corpus rows."""
    targets, segments = batch["targets"], batch["targets_segment_ids"]
    kwargs = {"decoder_tokens": shift_right_by_segment(targets, segments), "decoder_segment_ids": segments}
    weights = (segments > 0).astype(jnp.float32)
    if layout == "encdec":
        kwargs.update(encoder_tokens=batch["inputs"], encoder_segment_ids=batch["inputs_segment_ids"])
    elif layout == "decoder":
        weights = weights * batch["loss_mask"].astype(jnp.float32)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return kwargs, targets, weights


def token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-token cross-entropy and log-partition log(Z), both float32 [batch, length]."""
    logits = logits.astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return log_z - target_logit, log_z


def loss_sums(logits: jax.Array, targets: jax.Array, weights: jax.Array, z_loss: float) -> dict[str, jax.Array]:
    """Summed (not averaged) terms, so batches and hosts combine by addition:
    cross_entropy, z_loss (z_loss * log(Z)^2 per token) and weight (number of loss tokens)."""
    ce, log_z = token_losses(logits, targets)
    return {
        "cross_entropy": jnp.sum(ce * weights),
        "z_loss": jnp.sum(z_loss * jnp.square(log_z) * weights),
        "weight": jnp.sum(weights),
    }


def mean_loss(sums: Mapping[str, jax.Array]) -> jax.Array:
    """The optimized objective: (cross-entropy + z-loss) per loss token."""
    return (sums["cross_entropy"] + sums["z_loss"]) / jnp.maximum(sums["weight"], 1.0)
