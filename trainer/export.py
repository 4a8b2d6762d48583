"""`flanmix export --checkpoint ckpt/ --to hf DIR`: a trained run as a Hugging Face model directory.

Encoder-decoder runs become a `T5ForConditionalGeneration` directory (config.json, model.safetensors,
spiece.model, generation_config.json): the parameter map is `trainer.convert_hf`, so
`from_pretrained(DIR)` computes the flanmix model's logits (parity-tested to 1e-4).

Decoder-only runs have no T5 class in `transformers`. They are written in the same directory shape
with the flanmix decoder-only format, documented here and round-trip tested:

    config.json         {"format": "flanmix-decoder-only", "format_version": 1, "model": ModelConfig fields,
                         "tensor_names": "hf-t5-decoder"}
    model.safetensors   float32 tensors named as HF T5's decoder would name them without cross-attention:
                        shared.weight, decoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight,
                        decoder.block.{i}.layer.0.layer_norm.weight, decoder.block.{i}.layer.1.DenseReluDense.
                        {wi_0,wi_1,wo}.weight, decoder.block.{i}.layer.1.layer_norm.weight,
                        decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight,
                        decoder.final_layer_norm.weight, lm_head.weight ([out, in] like torch Linear)
    spiece.model        the corpus vocabulary

`flanmix train --init DIR` reads both formats back (`load_init`), and so does `read_export`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil

import numpy as np

from trainer import convert_hf
from trainer.config import ModelConfig
from trainer.errors import CheckpointMismatchError

DECODER_FORMAT = "flanmix-decoder-only"


def restore_params(checkpoint_dir: str, step: int | None = None) -> tuple[dict, dict, int]:
    """(params as numpy, the run's meta, step) from OUT or OUT/checkpoints of a `flanmix train` run."""
    import jax
    import orbax.checkpoint as ocp

    from trainer.checkpoint import Checkpoints

    directory = checkpoint_dir.rstrip("/")
    if os.path.basename(directory) == "checkpoints":  # OUT/checkpoints given instead of OUT
        directory = os.path.dirname(directory)
    ckpts = Checkpoints(os.path.join(directory, "checkpoints"), keep=1000)
    try:
        step = ckpts.latest_step() if step is None else step
        if step is None:
            raise CheckpointMismatchError(f"{directory}/checkpoints holds no checkpoint; is it the --out of `flanmix train`?")
        meta = ckpts.restore_meta(step)
        restored = ckpts.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    finally:
        ckpts.manager.close()
    params = jax.tree.map(np.asarray, restored["params"])
    return params, meta, step


def model_config_from_meta(meta: dict) -> ModelConfig:
    return ModelConfig(**meta["model"])


def vocab_path_of_run(checkpoint_dir: str, meta: dict) -> str | None:
    """The corpus vocabulary the run trained with (manifest of the run's corpus), if it can be found."""
    corpus = (meta.get("train_config") or {}).get("corpus")
    if not corpus:
        return None
    try:
        with open(os.path.join(corpus, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except OSError:
        return None
    rel = (manifest.get("vocabulary") or {}).get("path")
    if not rel:
        return None
    path = rel if os.path.isabs(rel) else os.path.join(corpus, rel)
    return path if os.path.exists(path) else None


def write_hf(params: dict, cfg: ModelConfig, layout: str, out_dir: str, vocab_path: str | None) -> list[str]:
    """Write the export directory; returns the files written."""
    from safetensors.numpy import save_file

    os.makedirs(out_dir, exist_ok=True)
    tensors = convert_hf.to_hf(params, cfg, layout)
    if layout == "encdec":
        config = convert_hf.hf_config(cfg, layout)
        with open(os.path.join(out_dir, "generation_config.json"), "w", encoding="utf-8") as f:
            json.dump({"decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}, f, indent=2)
    else:
        config = {"format": DECODER_FORMAT, "format_version": 1, "tensor_names": "hf-t5-decoder",
                  "model": dataclasses.asdict(cfg)}
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    written = ["config.json", "model.safetensors"] + (["generation_config.json"] if layout == "encdec" else [])
    if vocab_path:
        shutil.copyfile(vocab_path, os.path.join(out_dir, "spiece.model"))
        written.append("spiece.model")
    return written


def read_export(root: str) -> tuple[ModelConfig, str, str, dict[str, np.ndarray]]:
    """(model config, layout, dtype, {HF name: array}) of an HF T5 directory or a flanmix decoder-only export."""
    config_path = convert_hf._join(root, "config.json")
    if not convert_hf._exists(config_path):
        raise CheckpointMismatchError(f"{root} has no config.json; is it a Hugging Face model directory?")
    config = json.loads(convert_hf._read_bytes(config_path))
    if config.get("format") == DECODER_FORMAT:
        cfg = ModelConfig(**config["model"])
        tensors = {}
        for path in convert_hf._weight_files(root):
            tensors.update(convert_hf._read_weights(path))
        return cfg, "decoder", "float32", tensors
    cfg, dtype, tensors = convert_hf.read_hf_checkpoint(root)
    return cfg, "encdec", dtype, tensors


def export(checkpoint_dir: str, to: str, out_dir: str, step: int | None = None, log=print) -> list[str]:
    if to != "hf":
        raise CheckpointMismatchError(f"unknown export format {to!r}; use hf")
    params, meta, step = restore_params(checkpoint_dir, step)
    cfg = model_config_from_meta(meta)
    vocab = vocab_path_of_run(checkpoint_dir, meta)
    written = write_hf(params, cfg, meta["layout"], out_dir, vocab)
    log(f"flanmix export: step {step} of {checkpoint_dir} ({meta['layout']}) -> {out_dir}: {', '.join(written)}"
        + ("" if vocab else " (vocabulary not found: the run's corpus manifest is not readable here)"))
    return written
