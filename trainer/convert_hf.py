"""Hugging Face T5 (T5.1.1 / LM-adapted / Flan-T5) <-> flanmix parameters, without torch.

The two models compute the same function (T5.1.1: RMSNorm, gated-GELU, relative position buckets
shared by the layers of a stack and stored in layer 0, untied output layer, no 1/sqrt(d_kv)); only
names and matrix orientation differ. torch `nn.Linear` stores `weight` as [out, in]; flanmix kernels
are [in, out] with the attention heads as their own axis:

    flanmix                                       HF (T5ForConditionalGeneration)
    token_embedder/embedding        [V, d]        shared.weight                       [V, d]
    {enc,dec}/relpos_bias/embedding [h, B]        {enc,dec}.block.0.layer.0.SelfAttention.relative_attention_bias.weight [B, h]
    .../self_attention/query        [d, h, k]     ...SelfAttention.q.weight           [h*k, d]   (key, value alike)
    .../self_attention/out          [h, k, d]     ...SelfAttention.o.weight           [d, h*k]
    .../mlp/wi_0, wi_1              [d, f]        ...DenseReluDense.wi_0.weight       [f, d]
    .../mlp/wo                      [f, d]        ...DenseReluDense.wo.weight         [d, f]
    .../pre_*_norm/scale            [d]           ...layer.N.layer_norm.weight        [d]
    {enc,dec}/final_norm/scale      [d]           {enc,dec}.final_layer_norm.weight   [d]
    logits/kernel                   [d, V]        lm_head.weight                      [V, d]

Encoder layers hold layer.0 (self-attention) and layer.1 (MLP); decoder layers layer.0, layer.1
(EncDecAttention) and layer.2. Reading uses `safetensors` (numpy) or, for `pytorch_model.bin`,
torch when it is installed; paths may be local or a bucket URL (gs://, s3://; see `trainer.fileio`).
"""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Callable, Iterator, Mapping

import numpy as np

from trainer import fileio
from trainer.config import ModelConfig
from trainer.errors import CheckpointMismatchError

Params = dict  # nested {name: {...: np.ndarray}} as flax holds them

# --- the name and layout map ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    """One parameter: its flanmix path, its HF name, and how its array turns from one layout into the other."""

    path: tuple[str, ...]
    hf_name: str
    to_hf: Callable[[np.ndarray], np.ndarray]
    from_hf: Callable[[np.ndarray, ModelConfig], np.ndarray]


def _same(a, cfg=None):
    return a


def _t(a, cfg=None):
    return np.ascontiguousarray(a.T)


def _qkv_to_hf(a):  # [d, h, k] -> [h*k, d]
    return np.ascontiguousarray(a.reshape(a.shape[0], -1).T)


def _qkv_from_hf(a, cfg):
    return np.ascontiguousarray(a.T).reshape(a.shape[1], cfg.num_heads, -1)


def _out_to_hf(a):  # [h, k, d] -> [d, h*k]
    return np.ascontiguousarray(a.reshape(-1, a.shape[-1]).T)


def _out_from_hf(a, cfg):
    return np.ascontiguousarray(a.T).reshape(cfg.num_heads, -1, a.shape[0])


def _attention(path, hf_prefix) -> list[Entry]:
    entries = [Entry(path + (ours,), f"{hf_prefix}.{theirs}.weight", _qkv_to_hf, _qkv_from_hf)
               for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v"))]
    return entries + [Entry(path + ("out",), f"{hf_prefix}.o.weight", _out_to_hf, _out_from_hf)]


def _mlp(path, hf_prefix) -> list[Entry]:
    return [Entry(path + (n,), f"{hf_prefix}.DenseReluDense.{n}.weight", _t, _t) for n in ("wi_0", "wi_1", "wo")]


def _norm(path, hf_name) -> Entry:
    return Entry(path + ("scale",), hf_name, _same, _same)


def stack_entries(stack: str, num_layers: int, cross_attention: bool, hf_stack: str | None = None) -> list[Entry]:
    """Entries of one flanmix Stack ("encoder" / "decoder") against HF's `{hf_stack}.block.*` names."""
    hf = hf_stack or stack
    out = [Entry((stack, "relpos_bias", "embedding"),
                 f"{hf}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", _t, _t)]
    for i in range(num_layers):
        p, b = (stack, f"layer_{i}"), f"{hf}.block.{i}.layer"
        out.append(_norm(p + ("pre_self_attention_norm",), f"{b}.0.layer_norm.weight"))
        out += _attention(p + ("self_attention",), f"{b}.0.SelfAttention")
        mlp_index = 1
        if cross_attention:
            out.append(_norm(p + ("pre_cross_attention_norm",), f"{b}.1.layer_norm.weight"))
            out += _attention(p + ("cross_attention",), f"{b}.1.EncDecAttention")
            mlp_index = 2
        out.append(_norm(p + ("pre_mlp_norm",), f"{b}.{mlp_index}.layer_norm.weight"))
        out += _mlp(p + ("mlp",), f"{b}.{mlp_index}")
    out.append(_norm((stack, "final_norm"), f"{hf}.final_layer_norm.weight"))
    return out


def entries(cfg: ModelConfig, layout: str = "encdec") -> list[Entry]:
    """Every parameter of the flanmix model for `layout`, in model order (embedding first)."""
    head = [Entry(("token_embedder", "embedding"), "shared.weight", _same, _same)]
    tail = [Entry(("logits", "kernel"), "lm_head.weight", _t, _t)]
    if layout == "encdec":
        return (head + stack_entries("encoder", cfg.num_encoder_layers, False)
                + stack_entries("decoder", cfg.num_decoder_layers, True) + tail)
    if layout == "decoder":
        return head + stack_entries("decoder", cfg.num_decoder_layers, False) + tail
    raise ValueError(f"unknown layout {layout!r}")


def flatten(params: Mapping) -> dict[tuple[str, ...], np.ndarray]:
    out = {}
    for k, v in params.items():
        if isinstance(v, Mapping):
            out.update({(k,) + p: a for p, a in flatten(v).items()})
        else:
            out[(k,)] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], np.ndarray]) -> Params:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def to_hf(params: Mapping, cfg: ModelConfig, layout: str = "encdec") -> dict[str, np.ndarray]:
    """flanmix params -> {HF name: float32 array}. Every flanmix parameter must be used exactly once."""
    flat = {p: np.asarray(a, np.float32) for p, a in flatten(params).items()}
    table = entries(cfg, layout)
    unused = set(flat) - {e.path for e in table}
    if unused:
        raise CheckpointMismatchError(f"parameters with no Hugging Face name: {', '.join('/'.join(p) for p in sorted(unused))}")
    return {e.hf_name: e.to_hf(flat[e.path]) for e in table}


def from_hf(tensors: Mapping[str, np.ndarray], cfg: ModelConfig, layout: str = "encdec",
            expected: Mapping[tuple[str, ...], tuple[int, ...]] | None = None, source: str = "checkpoint") -> Params:
    """{HF name: array} -> flanmix params (float32). `expected`: the model's shapes by path; the first
    parameter whose converted shape differs is named with both shapes."""
    out = {}
    for e in entries(cfg, layout):
        if e.hf_name not in tensors:
            raise CheckpointMismatchError(f"{source} has no parameter {e.hf_name} (needed for {'/'.join(e.path)})")
        array = np.asarray(tensors[e.hf_name])
        try:
            value = e.from_hf(array.astype(np.float32), cfg)
        except ValueError:
            raise CheckpointMismatchError(f"{source}: parameter {e.hf_name} has shape {tuple(array.shape)}, which does "
                                          f"not fit {'/'.join(e.path)} of the model") from None
        want = None if expected is None else tuple(expected[e.path])
        if want is not None and tuple(value.shape) != want:
            raise CheckpointMismatchError(
                f"{source} does not fit the model: first mismatching parameter {e.hf_name} ({'/'.join(e.path)}) has "
                f"shape {tuple(value.shape)} in the checkpoint, the model needs {want}")
        out[e.path] = value
    return unflatten(out)


# --- configs ---------------------------------------------------------------------------------------

def hf_config(cfg: ModelConfig, layout: str = "encdec") -> dict:
    """config.json for `transformers.T5Config` (T5.1.1 conventions: gated-gelu, untied embeddings)."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "d_model": cfg.d_model,
        "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff,
        "num_heads": cfg.num_heads,
        "num_layers": cfg.num_encoder_layers,
        "num_decoder_layers": cfg.num_decoder_layers,
        "vocab_size": cfg.vocab_size,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "dropout_rate": cfg.dropout_rate,
        "feed_forward_proj": "gated-gelu",
        "tie_word_embeddings": False,
        "is_encoder_decoder": True,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "torch_dtype": "float32",
    }


def model_config_from_hf(config: Mapping, source: str = "config.json") -> tuple[ModelConfig, str]:
    """(ModelConfig, the checkpoint's dtype) from a T5 config.json; refuses what this model cannot compute."""
    if config.get("model_type", "t5") not in ("t5", "mt5", "umt5"):
        raise CheckpointMismatchError(f"{source}: model_type {config.get('model_type')!r} is not a T5 model")
    proj = config.get("feed_forward_proj", "relu")
    if proj not in ("gated-gelu", "gated-gelu_new"):
        raise CheckpointMismatchError(f"{source}: feed_forward_proj {proj!r}; this trainer is T5.1.1 (gated-gelu) only "
                                      "(original T5 checkpoints use relu and tied embeddings)")
    if config.get("tie_word_embeddings", True):
        raise CheckpointMismatchError(f"{source}: tie_word_embeddings is true; T5.1.1 checkpoints have an untied output layer")
    cfg = ModelConfig(
        name="init", d_model=int(config["d_model"]), num_heads=int(config["num_heads"]), d_kv=int(config["d_kv"]),
        d_ff=int(config["d_ff"]), num_encoder_layers=int(config["num_layers"]),
        num_decoder_layers=int(config.get("num_decoder_layers") or config["num_layers"]),
        vocab_size=int(config["vocab_size"]),
        relative_attention_num_buckets=int(config.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(config.get("relative_attention_max_distance", 128)),
        layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-6)))
    return cfg, str(config.get("torch_dtype") or config.get("dtype") or "float32")


# --- reading a checkpoint directory ----------------------------------------------------------------

def _join(root: str, name: str) -> str:
    return fileio.join(root, name)


_exists = fileio.exists
_read_bytes = fileio.read_bytes


def _weight_files(root: str) -> Iterator[str]:
    """The weight files of an HF directory: one file, or the shards an index names."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if _exists(_join(root, single)):
            yield _join(root, single)
            return
        if _exists(_join(root, index)):
            for name in sorted(set(json.loads(_read_bytes(_join(root, index)))["weight_map"].values())):
                yield _join(root, name)
            return
    raise CheckpointMismatchError(f"{root} holds no model.safetensors or pytorch_model.bin (nor a sharded index)")


def _read_weights(path: str) -> dict[str, np.ndarray]:
    data = _read_bytes(path)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load

        try:
            return load(data)
        except Exception:  # noqa: BLE001 - bfloat16 has no numpy dtype in safetensors.numpy; go through ml_dtypes
            return _load_safetensors_raw(data)
    try:
        import torch
    except ImportError:
        raise CheckpointMismatchError(f"{path} is a PyTorch pickle; reading it needs torch (or convert it to "
                                      "safetensors)") from None
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}


def _load_safetensors_raw(data: bytes) -> dict[str, np.ndarray]:
    """safetensors by hand (8-byte header length, JSON header, raw little-endian buffers): covers BF16."""
    import ml_dtypes

    dtypes = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtypes[info["dtype"]]).reshape(info["shape"])
    return out


def read_hf_checkpoint(root: str) -> tuple[ModelConfig, str, dict[str, np.ndarray]]:
    """(model config, dtype, {HF name: array}) of a Hugging Face T5 directory (local or bucket URL)."""
    config_path = _join(root, "config.json")
    if not _exists(config_path):
        raise CheckpointMismatchError(f"{root} has no config.json; is it a Hugging Face model directory?")
    cfg, dtype = model_config_from_hf(json.loads(_read_bytes(config_path)), config_path)
    tensors: dict[str, np.ndarray] = {}
    for path in _weight_files(root):
        tensors.update(_read_weights(path))
    if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:
        tensors["shared.weight"] = tensors["encoder.embed_tokens.weight"]
    return cfg, dtype, tensors


def spm_path(root: str) -> str | None:
    """The SentencePiece model next to an HF checkpoint (`spiece.model`), if there is one."""
    path = _join(root, "spiece.model")
    return path if _exists(path) else None
