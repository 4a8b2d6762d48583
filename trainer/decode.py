"""Greedy decoding for the encoder-decoder model with a key/value cache.

The encoder runs once (the `trainer.model` Stack on the flax parameters). The decoder then runs one
token per step as plain jnp over the same parameters: each self-attention layer appends the step's key
and value to a [batch, max_length, heads, d_kv] cache and attends over the filled prefix, with the
relative position bias of (key index - step) from the same bucket table as training; cross-attention
uses keys and values of the encoder output computed once. A step therefore costs O(max_length), not
O(max_length^2) like re-running the whole decoder, and gives the same logits as the full forward pass
on the prefix (tested).

Decoding starts from token 0 (T5's start token) and stops per row at EOS (1); positions after a row's
EOS are 0.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from trainer.config import ModelConfig
from trainer.model import NEG_INF, Embed, Stack, relative_position_bucket

EOS = 1


def _rms(x, scale, eps):
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps) * scale


def encode(params, cfg: ModelConfig, tokens, segment_ids):
    """Encoder output [batch, inputs_length, d_model] (float32, no dropout)."""
    embedded = Embed(cfg).apply({"params": params["token_embedder"]}, tokens)
    return Stack(cfg, cfg.num_encoder_layers, causal=False).apply({"params": params["encoder"]}, embedded, segment_ids, True)


@functools.partial(jax.jit, static_argnames=("cfg", "max_length"))
def greedy_decode(params, cfg: ModelConfig, encoder_tokens, encoder_segment_ids, max_length: int):
    """(tokens [batch, max_length] ending at EOS then 0s, step logits [batch, max_length, vocab])."""
    cfg32 = dataclasses.replace(cfg, activation_dtype="float32", dropout_rate=0.0)
    encoded = encode(params, cfg32, encoder_tokens, encoder_segment_ids).astype(jnp.float32)
    batch = encoder_tokens.shape[0]
    h, k = cfg.num_heads, cfg.d_kv
    dec = params["decoder"]
    layers = [dec[f"layer_{i}"] for i in range(cfg.num_decoder_layers)]
    enc_valid = (encoder_segment_ids > 0)[:, None, :]  # [batch, 1, source]
    cross_kv = [(jnp.einsum("bsd,dhk->bshk", encoded, p["cross_attention"]["key"]),
                 jnp.einsum("bsd,dhk->bshk", encoded, p["cross_attention"]["value"])) for p in layers]
    # Bucket of (key j - query t) for every step t and cache slot j: static, [max_length, max_length].
    distance = np.arange(max_length)[None, :] - np.arange(max_length)[:, None]
    buckets = jnp.asarray(relative_position_bucket(distance, False, cfg.relative_attention_num_buckets,
                                                   cfg.relative_attention_max_distance))
    table = dec["relpos_bias"]["embedding"]  # [heads, buckets]
    embedding = params["token_embedder"]["embedding"]
    eps = cfg.layer_norm_epsilon

    def step(carry, t):
        token, done, caches = carry
        x = embedding[token]  # [batch, d]
        bias = jnp.take(table, buckets[t], axis=1)  # [heads, max_length]
        visible = jnp.arange(max_length) <= t
        new_caches = []
        for p, (ck, cv), (enc_k, enc_v) in zip(layers, caches, cross_kv):
            a = p["self_attention"]
            y = _rms(x, p["pre_self_attention_norm"]["scale"], eps)
            q = jnp.einsum("bd,dhk->bhk", y, a["query"])
            ck = jax.lax.dynamic_update_slice(ck, jnp.einsum("bd,dhk->bhk", y, a["key"])[:, None], (0, t, 0, 0))
            cv = jax.lax.dynamic_update_slice(cv, jnp.einsum("bd,dhk->bhk", y, a["value"])[:, None], (0, t, 0, 0))
            new_caches.append((ck, cv))
            logits = jnp.einsum("bhk,bthk->bht", q, ck) + bias[None]
            w = jax.nn.softmax(jnp.where(visible[None, None], logits, NEG_INF), axis=-1)
            x = x + jnp.einsum("bhk,hkd->bd", jnp.einsum("bht,bthk->bhk", w, cv), a["out"])
            c = p["cross_attention"]
            y = _rms(x, p["pre_cross_attention_norm"]["scale"], eps)
            q = jnp.einsum("bd,dhk->bhk", y, c["query"])
            logits = jnp.einsum("bhk,bshk->bhs", q, enc_k)
            w = jax.nn.softmax(jnp.where(enc_valid, logits, NEG_INF), axis=-1)
            x = x + jnp.einsum("bhk,hkd->bd", jnp.einsum("bhs,bshk->bhk", w, enc_v), c["out"])
            m = p["mlp"]
            y = _rms(x, p["pre_mlp_norm"]["scale"], eps)
            x = x + (jax.nn.gelu(y @ m["wi_0"], approximate=True) * (y @ m["wi_1"])) @ m["wo"]
        x = _rms(x, dec["final_norm"]["scale"], eps)
        logits = x @ params["logits"]["kernel"]
        nxt = jnp.where(done, 0, jnp.argmax(logits, axis=-1).astype(jnp.int32))
        return (nxt, done | (nxt == EOS), new_caches), (nxt, logits)

    caches = [(jnp.zeros((batch, max_length, h, k), jnp.float32), jnp.zeros((batch, max_length, h, k), jnp.float32))
              for _ in layers]
    init = (jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool), caches)
    _, (tokens, logits) = jax.lax.scan(step, init, jnp.arange(max_length))
    return tokens.T, jnp.swapaxes(logits, 0, 1)
