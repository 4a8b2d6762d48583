"""Read a T5X checkpoint directory (as published for t5_1_1 and flan_t5) into flanmix parameters.

The format, as T5X's `t5x/checkpoints.py` (checkpoint version 3) writes it:

    MODEL_DIR/checkpoint_<step>/checkpoint      msgpack (flax.serialization) of
                                                {"version": 3, "optimizer": {"target": params, "state": ...}}
    MODEL_DIR/checkpoint_<step>/target.encoder.layers_0.attention.query.kernel/   a zarr array (gzip chunks)

Each leaf of "target" is either the array itself (small, unpartitioned parameters, inline in the
msgpack) or a TensorStore spec as a dict: {"driver": "zarr", "dtype": ..., "kvstore": {"driver":
"file" | "gcs", "path": "target.<dotted name>"}, "metadata": {...}}, the path relative to the
checkpoint_<step> directory (older files put "path" at the top level; gcs specs carry a placeholder
bucket that the reader replaces). Parameters may be saved as bfloat16; they are read as float32.

T5X's parameter names map onto flanmix's with reshapes only: T5X keeps 2-D attention kernels
(embed, heads*kv) / (heads*kv, embed) where flanmix has (embed, heads, kv) / (heads, kv, embed);
everything else is the same array under another name. The model configuration is read off the shapes
(T5X directories carry no config.json): widths from the kernels, head count from the relative
position table, depths from the layer count, vocabulary from the embedding.
"""
from __future__ import annotations

import re

import numpy as np

from trainer import fileio
from trainer.config import ModelConfig
from trainer.errors import CheckpointMismatchError

CHECKPOINT_FILE = "checkpoint"


def find_checkpoint_dir(path: str) -> str | None:
    """The checkpoint_<step> directory at or under `path` (the newest step), or None if it is not T5X."""
    if fileio.exists(fileio.join(path, CHECKPOINT_FILE)):
        return path.rstrip("/")
    steps = [(int(m.group(1)), name) for name in fileio.list_dir(path)
             if (m := re.fullmatch(r"checkpoint_(\d+)", name))]
    for _, name in sorted(steps, reverse=True):
        candidate = fileio.join(path, name)
        if fileio.exists(fileio.join(candidate, CHECKPOINT_FILE)):
            return candidate
    return None


def _flatten(tree, prefix=()) -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and not _is_spec(v):
            out.update(_flatten(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def _is_spec(v) -> bool:
    return isinstance(v, dict) and "driver" in v and ("kvstore" in v or "path" in v)


def _read_spec(spec: dict, checkpoint_dir: str) -> np.ndarray:
    """Open a zarr TensorStore whose path is relative to `checkpoint_dir` and read it whole."""
    import copy

    import tensorstore as ts

    spec = copy.deepcopy(spec)
    kvstore = spec.get("kvstore")
    relative = (kvstore or {}).get("path") if isinstance(kvstore, dict) else None
    if relative is None:
        relative = spec.pop("path")
    m = re.fullmatch(r"gs://([^/]+)/(.*)", checkpoint_dir)
    if m:
        spec["kvstore"] = {"driver": "gcs", "bucket": m.group(1), "path": f"{m.group(2).rstrip('/')}/{relative}"}
    elif fileio.is_url(checkpoint_dir):
        raise CheckpointMismatchError(f"{checkpoint_dir}: T5X tensors are read with TensorStore, which reads local "
                                      "paths and gs:// only")
    else:
        spec["kvstore"] = {"driver": "file", "path": f"{checkpoint_dir.rstrip('/')}/{relative}"}
    spec.pop("path", None)
    try:
        return np.asarray(ts.open(spec, open=True, read=True).result().read().result())
    except Exception as exc:  # noqa: BLE001 - TensorStore reports missing or corrupt arrays as ValueError etc.
        raise CheckpointMismatchError(f"{checkpoint_dir}: cannot read tensor {relative} ({exc})") from None


def read_target(checkpoint_dir: str) -> dict[tuple[str, ...], np.ndarray]:
    """{path under "target": float32 array} of one checkpoint_<step> directory."""
    from flax import serialization

    raw = serialization.msgpack_restore(fileio.read_bytes(fileio.join(checkpoint_dir, CHECKPOINT_FILE)))
    version = raw.get("version", 0)
    state = raw if version == 0 else raw.get("optimizer", {})
    if "target" not in state:
        raise CheckpointMismatchError(f"{checkpoint_dir}/{CHECKPOINT_FILE} has no 'target' (parameters); "
                                      f"top-level keys: {', '.join(map(str, state))}")
    out = {}
    for path, leaf in _flatten(state["target"]).items():
        array = _read_spec(leaf, checkpoint_dir) if _is_spec(leaf) else np.asarray(leaf)
        out[path] = array.astype(np.float32)
    return out


def _get(target, path, source):
    if path not in target:
        raise CheckpointMismatchError(f"{source} has no parameter target/{'/'.join(path)}")
    return target[path]


def model_config_from_shapes(target: dict, source: str) -> ModelConfig:
    """T5.1.1 configuration implied by the parameter shapes of a T5X checkpoint."""
    vocab, d_model = _get(target, ("token_embedder", "embedding"), source).shape
    heads, buckets = _get(target, ("encoder", "relpos_bias", "rel_embedding"), source).shape
    joined = _get(target, ("encoder", "layers_0", "attention", "query", "kernel"), source).shape[1]
    if ("encoder", "layers_0", "mlp", "wi_0", "kernel") not in target:
        raise CheckpointMismatchError(f"{source}: no encoder/layers_0/mlp/wi_0 (a gated-GELU MLP); original T5 "
                                      "checkpoints (relu, tied embeddings) are not T5.1.1")
    d_ff = target[("encoder", "layers_0", "mlp", "wi_0", "kernel")].shape[1]

    def depth(stack):
        return len({p[1] for p in target if p[0] == stack and re.fullmatch(r"layers_\d+", p[1])})

    return ModelConfig("init", d_model=int(d_model), num_heads=int(heads), d_kv=int(joined) // int(heads), d_ff=int(d_ff),
                       num_encoder_layers=depth("encoder"), num_decoder_layers=depth("decoder"), vocab_size=int(vocab),
                       relative_attention_num_buckets=int(buckets))


def _attention(target, ours, theirs, cfg, source, out):
    h, k = cfg.num_heads, cfg.d_kv
    for name in ("query", "key", "value"):
        a = _get(target, theirs + (name, "kernel"), source)
        out[ours + (name,)] = (a, (a.shape[0], h, k) if a.shape[1] == h * k else None)
    a = _get(target, theirs + ("out", "kernel"), source)
    out[ours + ("out",)] = (a, (h, k, a.shape[1]) if a.shape[0] == h * k else None)


def to_flanmix(target: dict, cfg: ModelConfig, source: str) -> dict[tuple[str, ...], tuple[np.ndarray, tuple | None]]:
    """{flanmix path: (T5X array, the shape it is reshaped to, or None when it does not fit the heads)}."""
    out = {("token_embedder", "embedding"): (_get(target, ("token_embedder", "embedding"), source), None)}
    for stack, final in (("encoder", "encoder_norm"), ("decoder", "decoder_norm")):
        layers = cfg.num_encoder_layers if stack == "encoder" else cfg.num_decoder_layers
        out[(stack, "relpos_bias", "embedding")] = (_get(target, (stack, "relpos_bias", "rel_embedding"), source), None)
        for i in range(layers):
            p, t = (stack, f"layer_{i}"), (stack, f"layers_{i}")
            if stack == "encoder":
                out[p + ("pre_self_attention_norm", "scale")] = (_get(target, t + ("pre_attention_layer_norm", "scale"), source), None)
                _attention(target, p + ("self_attention",), t + ("attention",), cfg, source, out)
            else:
                out[p + ("pre_self_attention_norm", "scale")] = (
                    _get(target, t + ("pre_self_attention_layer_norm", "scale"), source), None)
                _attention(target, p + ("self_attention",), t + ("self_attention",), cfg, source, out)
                out[p + ("pre_cross_attention_norm", "scale")] = (
                    _get(target, t + ("pre_cross_attention_layer_norm", "scale"), source), None)
                _attention(target, p + ("cross_attention",), t + ("encoder_decoder_attention",), cfg, source, out)
            out[p + ("pre_mlp_norm", "scale")] = (_get(target, t + ("pre_mlp_layer_norm", "scale"), source), None)
            for name in ("wi_0", "wi_1", "wo"):
                out[p + ("mlp", name)] = (_get(target, t + ("mlp", name, "kernel"), source), None)
        out[(stack, "final_norm", "scale")] = (_get(target, (stack, final, "scale"), source), None)
    out[("logits", "kernel")] = (_get(target, ("decoder", "logits_dense", "kernel"), source), None)
    return out


def read_t5x(path: str) -> tuple[ModelConfig, str, dict]:
    """(model config from the shapes, checkpoint dir, {flanmix path: (array, reshape-to or None)})."""
    checkpoint_dir = find_checkpoint_dir(path)
    if checkpoint_dir is None:
        raise CheckpointMismatchError(f"{path} is not a T5X checkpoint (no checkpoint file, no checkpoint_<step>/)")
    target = read_target(checkpoint_dir)
    cfg = model_config_from_shapes(target, checkpoint_dir)
    return cfg, checkpoint_dir, to_flanmix(target, cfg, checkpoint_dir)


def write_t5x(directory: str, step: int, target: dict, inline: set | None = None, dtype: str = "float32") -> str:
    """Write a T5X-format checkpoint_<step>/ (msgpack + zarr TensorStores) of `target` ({T5X path: array}).
    Paths in `inline` are stored in the msgpack itself, as T5X does for unpartitioned parameters.
    Used by the tests and for handing flanmix weights to T5X."""
    import os

    import tensorstore as ts
    from flax import serialization

    checkpoint_dir = os.path.join(directory, f"checkpoint_{step}")
    os.makedirs(checkpoint_dir, exist_ok=True)
    tree: dict = {}
    for path, array in target.items():
        name = "target." + ".".join(path)
        if inline and path in inline:
            leaf = np.asarray(array, np.float32)
        else:
            spec = {"driver": "zarr", "dtype": dtype, "kvstore": {"driver": "file", "path": name},
                    "metadata": {"compressor": {"id": "gzip"}, "shape": list(array.shape), "chunks": list(array.shape)}}
            absolute = {**spec, "kvstore": {"driver": "file", "path": os.path.join(checkpoint_dir, name)}}
            store = ts.open(absolute, create=True, open=True).result()
            store.write(np.asarray(array).astype(store.dtype.numpy_dtype)).result()
            leaf = spec
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = leaf
    payload = {"version": 3, "optimizer": {"target": tree, "state": {"step": np.asarray(step, np.int32)}}}
    with open(os.path.join(checkpoint_dir, CHECKPOINT_FILE), "wb") as f:
        f.write(serialization.msgpack_serialize(payload))
    return checkpoint_dir


def from_flanmix(params: dict, cfg: ModelConfig) -> dict[tuple[str, ...], np.ndarray]:
    """flanmix params -> {T5X path: array} (the inverse of `to_flanmix`)."""
    from trainer.convert_hf import flatten

    flat = flatten(params)
    inverse = {}
    for ours, (theirs_array, _) in to_flanmix(_template(cfg), cfg, "template").items():
        inverse[ours] = theirs_array  # the template maps each flanmix path to its T5X path
    out = {}
    for ours, t5x_path in inverse.items():
        a = np.asarray(flat[ours], np.float32)
        if ours[-1] in ("query", "key", "value"):
            a = a.reshape(a.shape[0], -1)
        elif ours[-1] == "out":
            a = a.reshape(-1, a.shape[-1])
        out[t5x_path] = a
    return out


class _Name(tuple):
    """A T5X path standing in for an array, so `to_flanmix` can be run on names (`shape` for _attention)."""

    shape = (0, 0)


def _template(cfg: ModelConfig) -> dict:
    class Names(dict):
        def __contains__(self, key):
            return True

        def __missing__(self, key):
            return _Name(key)

    return Names()
