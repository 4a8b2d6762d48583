"""T5.1.1-style Transformers in Flax: an encoder-decoder and a decoder-only model.

The T5.1.1 choices: RMSNorm before each sublayer (scale only, no mean, no bias), a gated-GELU MLP,
no bias anywhere, no absolute positions (a learned bias per relative-distance bucket and head,
shared by all layers of a stack), one input embedding shared by encoder and decoder, and an untied
output layer. Attention logits are not divided by sqrt(d_kv); the query initialization is scaled
instead, as in T5.

Packing: a row holds several examples, told apart by segment ids (1, 2, ...; 0 is padding). Every
attention is masked so a token only sees tokens of its own segment:

    encoder self-attention     q_seg == k_seg
    decoder self-attention     q_seg == k_seg and k <= q
    cross-attention            decoder q_seg == encoder k_seg

Relative positions are taken from indices within the row. Inside one segment the index difference
equals the difference of the corpus' `*_positions` (segments are contiguous), and pairs from
different segments are masked, so the model sees each example exactly as if it were alone; the
packed-vs-unpacked test checks this.

Parameters carry logical axis names ("vocab", "embed", "heads", "kv", "mlp", "relpos_buckets");
`trainer.sharding` maps them onto the mesh.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from trainer.config import ModelConfig

NEG_INF = -1e10  # added to masked logits; finite, so an all-padding query row stays free of NaNs


def _param(module: nn.Module, name: str, shape: tuple[int, ...], stddev: float, axes: tuple[str, ...]):
    init = nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)
    return module.param(name, init, shape, jnp.float32)


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of each (key index - query index): exact buckets for short distances, log-spaced ones up to
    `max_distance`, everything farther in the last bucket. Bidirectional attention spends half the
    buckets on keys after the query; causal attention only sees keys at or before it. (numpy: the
    distances are static, so the buckets are computed once, at trace time.)

    >>> relative_position_bucket(np.array([-200, -20, -3, 0, 3, 20, 200]), True, 32, 128).tolist()
    [15, 10, 3, 0, 19, 26, 31]
    """
    rel = np.asarray(relative_position, np.int64)
    bucket = np.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        bucket += (rel > 0) * num_buckets
        distance = np.abs(rel)
    else:
        distance = np.maximum(-rel, 0)
    exact = num_buckets // 2
    log_ratio = np.log(np.maximum(distance, exact).astype(np.float32) / exact) / np.float32(np.log(max_distance / exact))
    far = np.minimum(exact + (log_ratio * (num_buckets - exact)).astype(np.int64), num_buckets - 1)
    return (bucket + np.where(distance < exact, distance, far)).astype(np.int32)


def segment_mask(q_segment_ids: jax.Array, k_segment_ids: jax.Array) -> jax.Array:
    """[batch, 1, q, k] True where a query may attend to a key: same segment, and not padding."""
    same = q_segment_ids[:, :, None] == k_segment_ids[:, None, :]
    return (same & (q_segment_ids[:, :, None] > 0))[:, None]


class RMSNorm(nn.Module):
    """x / rms(x) * scale, computed in float32 (T5's LayerNorm)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.cfg.layer_norm_epsilon)
        return (y * scale).astype(self.cfg.activation_dtype)


class RelativePositionBias(nn.Module):
    """[1, heads, q, k] learned bias looked up by `relative_position_bucket` of index differences."""

    cfg: ModelConfig
    bidirectional: bool

    @nn.compact
    def __call__(self, q_len: int, k_len: int) -> jax.Array:
        cfg = self.cfg
        table = _param(self, "embedding", (cfg.num_heads, cfg.relative_attention_num_buckets), 1.0 / cfg.num_heads ** 0.5,
                       ("heads", "relpos_buckets"))
        # One bias per distinct distance k - q (q_len + k_len - 1 of them), laid out as a Toeplitz matrix
        # by tiling and reshaping. A [q, k] matrix of buckets would be a large constant that XLA folds
        # slowly at compile time, and its gather's gradient a scatter-add of q * k elements.
        distances = np.arange(-(q_len - 1), k_len)
        buckets = relative_position_bucket(distances, self.bidirectional, cfg.relative_attention_num_buckets,
                                           cfg.relative_attention_max_distance)
        return toeplitz(jnp.take(table, jnp.asarray(buckets), axis=1), q_len, k_len)[None]


def toeplitz(values: jax.Array, q_len: int, k_len: int) -> jax.Array:
    """[..., q_len + k_len - 1] values per distance -> [..., q_len, k_len] with out[i, j] = values[j - i + q_len - 1].

    Row i starts q_len - 1 - i into `values`. Append one filler value (length L + 1), tile q_len times
    and drop the first q_len - 1 entries: rows of width L then start one earlier in `values` each time.
    Only tiling, slicing and reshaping, so the gradient is a sum, not a scatter.

    >>> toeplitz(jnp.arange(4), 2, 3).tolist()   # distances -1, 0, 1, 2
    [[1, 2, 3], [0, 1, 2]]
    """
    width = q_len + k_len - 1
    assert values.shape[-1] == width, (values.shape, q_len, k_len)
    lead = values.shape[:-1]
    padded = jnp.concatenate([values, jnp.zeros(lead + (1,), values.dtype)], axis=-1)
    tiled = jnp.tile(padded, (1,) * len(lead) + (q_len,))
    rows = jax.lax.slice_in_dim(tiled, q_len - 1, q_len - 1 + q_len * width, axis=-1)
    return rows.reshape(lead + (q_len, width))[..., :k_len]


def attention_mask(q_segment_ids: jax.Array, k_segment_ids: jax.Array, causal: bool) -> jax.Array:
    """[batch, 1, q, k] boolean: same segment, not padding and (causal) k <= q. Built inside each
    attention from the [batch, length] segment ids, so XLA fuses it into the softmax instead of keeping a
    [batch, 1, q, k] float32 bias alive through the whole stack (and its backward pass)."""
    mask = segment_mask(q_segment_ids, k_segment_ids)
    if causal:
        q_len, k_len = q_segment_ids.shape[1], k_segment_ids.shape[1]
        mask = mask & (jnp.arange(k_len)[None, :] <= jnp.arange(q_len)[:, None])[None, None]
    return mask


class Attention(nn.Module):
    """Multi-head attention without biases. `position_bias` ([1, heads, q, k] or None) is added to the
    logits; masking is by segment ids (see `attention_mask`) with `jnp.where`, never an additive mask."""

    cfg: ModelConfig
    causal: bool = False

    @nn.compact
    def __call__(self, x_q, x_kv, q_segment_ids, k_segment_ids, position_bias, deterministic: bool):
        cfg, dt = self.cfg, self.cfg.activation_dtype
        d, h, k = cfg.d_model, cfg.num_heads, cfg.d_kv
        wq = _param(self, "query", (d, h, k), (d * k) ** -0.5, ("embed", "heads", "kv"))
        wk = _param(self, "key", (d, h, k), d ** -0.5, ("embed", "heads", "kv"))
        wv = _param(self, "value", (d, h, k), d ** -0.5, ("embed", "heads", "kv"))
        wo = _param(self, "out", (h, k, d), (h * k) ** -0.5, ("heads", "kv", "embed"))
        q = jnp.einsum("bqd,dhk->bqhk", x_q, wq.astype(dt))
        key = jnp.einsum("btd,dhk->bthk", x_kv, wk.astype(dt))
        value = jnp.einsum("btd,dhk->bthk", x_kv, wv.astype(dt))
        logits = jnp.einsum("bqhk,bthk->bhqt", q, key, preferred_element_type=jnp.float32)
        if position_bias is not None:
            logits = logits + position_bias
        logits = jnp.where(attention_mask(q_segment_ids, k_segment_ids, self.causal), logits, NEG_INF)
        weights = jax.nn.softmax(logits, axis=-1).astype(dt)
        weights = nn.Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
        out = jnp.einsum("bhqt,bthk->bqhk", weights, value)
        return jnp.einsum("bqhk,hkd->bqd", out, wo.astype(dt))


class GatedGeluMlp(nn.Module):
    """wo(gelu(wi_0 x) * wi_1 x), the T5.1.1 feed-forward block."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, deterministic: bool):
        cfg, dt = self.cfg, self.cfg.activation_dtype
        wi_0 = _param(self, "wi_0", (cfg.d_model, cfg.d_ff), cfg.d_model ** -0.5, ("embed", "mlp"))
        wi_1 = _param(self, "wi_1", (cfg.d_model, cfg.d_ff), cfg.d_model ** -0.5, ("embed", "mlp"))
        wo = _param(self, "wo", (cfg.d_ff, cfg.d_model), cfg.d_ff ** -0.5, ("mlp", "embed"))
        hidden = nn.gelu(x @ wi_0.astype(dt), approximate=True) * (x @ wi_1.astype(dt))
        hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
        return hidden @ wo.astype(dt)


class Block(nn.Module):
    """One pre-norm layer: self-attention, optional cross-attention, MLP; dropout on each branch.
    `deterministic` is an attribute, not an argument, so the block can be rematerialized as a whole."""

    cfg: ModelConfig
    cross_attention: bool = False
    causal: bool = False
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, segment_ids, position_bias, encoded=None, encoder_segment_ids=None):
        det = self.deterministic
        drop = nn.Dropout(self.cfg.dropout_rate)
        h = RMSNorm(self.cfg, name="pre_self_attention_norm")(x)
        h = Attention(self.cfg, causal=self.causal, name="self_attention")(h, h, segment_ids, segment_ids, position_bias, det)
        x = x + drop(h, deterministic=det)
        if self.cross_attention:
            h = RMSNorm(self.cfg, name="pre_cross_attention_norm")(x)
            h = Attention(self.cfg, name="cross_attention")(h, encoded, segment_ids, encoder_segment_ids, None, det)
            x = x + drop(h, deterministic=det)
        h = RMSNorm(self.cfg, name="pre_mlp_norm")(x)
        return x + drop(GatedGeluMlp(self.cfg, name="mlp")(h, det), deterministic=det)


REMAT_POLICIES = {
    # What the backward pass may keep of each layer's forward pass instead of recomputing it.
    "none": None,  # no rematerialization: everything is kept (fastest, most memory)
    "full": "nothing_saveable",  # keep only each layer's input; recompute the layer in the backward pass
    "dots": "dots_with_no_batch_dims_saveable",  # keep weight matmul outputs, recompute attention scores (T5X's "minimal")
}


def block_class(cfg: ModelConfig):
    """`Block`, wrapped in `nn.remat` with the configured policy (`cfg.remat`)."""
    if cfg.remat not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {cfg.remat!r}; use one of {', '.join(REMAT_POLICIES)}")
    policy = REMAT_POLICIES[cfg.remat]
    if policy is None:
        return Block
    return nn.remat(Block, policy=getattr(jax.checkpoint_policies, policy), prevent_cse=True)


class Embed(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens):
        table = _param(self, "embedding", (self.cfg.vocab_size, self.cfg.d_model), 1.0, ("vocab", "embed"))
        return jnp.take(table, tokens, axis=0).astype(self.cfg.activation_dtype)


class Stack(nn.Module):
    """Encoder (bidirectional) or decoder (causal, optionally cross-attending) stack with final norm."""

    cfg: ModelConfig
    num_layers: int
    causal: bool
    cross_attention: bool = False

    @nn.compact
    def __call__(self, x, segment_ids, deterministic: bool, encoded=None, encoder_segment_ids=None):
        length = x.shape[1]
        position_bias = RelativePositionBias(self.cfg, bidirectional=not self.causal, name="relpos_bias")(length, length)
        drop = nn.Dropout(self.cfg.dropout_rate)
        x = drop(x, deterministic=deterministic)
        block = block_class(self.cfg)
        for i in range(self.num_layers):
            x = block(self.cfg, cross_attention=self.cross_attention, causal=self.causal, deterministic=deterministic,
                      name=f"layer_{i}")(x, segment_ids, position_bias, encoded, encoder_segment_ids)
        return drop(RMSNorm(self.cfg, name="final_norm")(x), deterministic=deterministic)


class OutputLogits(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x):
        w = _param(self, "kernel", (self.cfg.d_model, self.cfg.vocab_size), self.cfg.d_model ** -0.5, ("embed", "vocab"))
        return jnp.einsum("btd,dv->btv", x, w.astype(x.dtype), preferred_element_type=jnp.float32)


class EncoderDecoder(nn.Module):
    """Returns float32 logits [batch, targets_length, vocab_size]."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, encoder_tokens, encoder_segment_ids, decoder_tokens, decoder_segment_ids, deterministic: bool = True):
        cfg = self.cfg
        embed = Embed(cfg, name="token_embedder")
        encoded = Stack(cfg, cfg.num_encoder_layers, causal=False, name="encoder")(
            embed(encoder_tokens), encoder_segment_ids, deterministic)
        decoded = Stack(cfg, cfg.num_decoder_layers, causal=True, cross_attention=True, name="decoder")(
            embed(decoder_tokens), decoder_segment_ids, deterministic, encoded, encoder_segment_ids)
        return OutputLogits(cfg, name="logits")(decoded)


class DecoderOnly(nn.Module):
    """Causal language model over packed `targets` rows (the "decoder" layout)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, decoder_tokens, decoder_segment_ids, deterministic: bool = True):
        cfg = self.cfg
        decoded = Stack(cfg, cfg.num_decoder_layers, causal=True, name="decoder")(
            Embed(cfg, name="token_embedder")(decoder_tokens), decoder_segment_ids, deterministic)
        return OutputLogits(cfg, name="logits")(decoded)


def build_model(cfg: ModelConfig, layout: str) -> nn.Module:
    """The model family a corpus layout calls for: "encdec" -> EncoderDecoder, "decoder" -> DecoderOnly."""
    return {"encdec": EncoderDecoder, "decoder": DecoderOnly}[layout](cfg)
