"""`flanmix train --init PATH`: start from pretrained weights instead of a random initialization.

PATH may be
  * a Hugging Face T5.1.1 / LM-adapted / Flan-T5 directory (config.json + model.safetensors, sharded
    safetensors, or pytorch_model.bin), local or gs:// / s3://;
  * a T5X checkpoint directory (the model dir or one checkpoint_<step>/; see `trainer.t5x_import`);
  * a directory written by `flanmix export --to hf` (either layout).

The architecture (widths, depths, heads, vocabulary rows, e.g. 32128 for T5's 32000 pieces + 100
sentinels) comes from the checkpoint: its config.json, or for T5X the parameter shapes. With
`--model auto` (the default) the run takes it as is; with a named `--model` or `--vocab_size` the
model is built as asked and a checkpoint that does not fit is refused, naming the first mismatching
parameter and both shapes. Parameters are held in float32 whatever the checkpoint's dtype.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from trainer import convert_hf, fileio, t5x_import
from trainer.config import ModelConfig
from trainer.errors import CheckpointMismatchError


@dataclass(frozen=True)
class InitCheckpoint:
    """A pretrained checkpoint, read: what it is, its architecture and its arrays (not yet in flanmix shapes)."""

    path: str
    kind: str  # "hf", "flanmix-decoder-only" or "t5x"
    layout: str
    model_cfg: ModelConfig
    dtype: str
    tensors: dict  # hf: {HF name: array}; t5x: {flanmix path: (array, reshape-to)}
    vocab_sha256: str | None  # of the spiece.model next to it, when there is one

    def describe(self) -> str:
        c = self.model_cfg
        return (f"{self.kind} checkpoint {self.path}: d_model {c.d_model}, {c.num_heads} heads x {c.d_kv}, d_ff {c.d_ff}, "
                f"{c.num_encoder_layers}+{c.num_decoder_layers} layers, vocab_size {c.vocab_size}, dtype {self.dtype}")


def read_init(path: str) -> InitCheckpoint:
    """Recognize and read PATH (see module doc)."""
    from trainer import export

    if fileio.exists(fileio.join(path, "config.json")):
        cfg, layout, dtype, tensors = export.read_export(path)
        kind = "flanmix-decoder-only" if layout == "decoder" else "hf"
        spm = convert_hf.spm_path(path)
        sha = hashlib.sha256(fileio.read_bytes(spm)).hexdigest() if spm else None
        return InitCheckpoint(path, kind, layout, cfg, dtype, tensors, sha)
    if t5x_import.find_checkpoint_dir(path) is not None:
        cfg, checkpoint_dir, tensors = t5x_import.read_t5x(path)
        return InitCheckpoint(checkpoint_dir, "t5x", "encdec", cfg, "float32", tensors, None)
    raise CheckpointMismatchError(f"--init {path}: neither a Hugging Face directory (config.json) nor a T5X checkpoint "
                                  "(checkpoint_<step>/checkpoint)")


def check_fits_corpus(init: InitCheckpoint, layout: str, vocab_sha256: str) -> None:
    if init.layout != layout:
        raise CheckpointMismatchError(f"--init {init.path} is a {init.layout} model; the corpus has layout {layout!r}")
    if init.vocab_sha256 and init.vocab_sha256 != vocab_sha256:
        raise CheckpointMismatchError(
            f"--init {init.path} comes with spiece.model sha256 {init.vocab_sha256}; the corpus uses vocabulary "
            f"{vocab_sha256} (token ids would mean different pieces; build the corpus with the checkpoint's vocabulary)")


def params_for(init: InitCheckpoint, cfg: ModelConfig, expected: dict[tuple[str, ...], tuple[int, ...]]) -> dict:
    """The checkpoint's parameters as the flanmix model `cfg` holds them (float32 numpy), refusing the first
    parameter whose shape does not fit `expected` ({path: shape} of the model)."""
    source = f"--init {init.path}"
    if init.kind in ("hf", "flanmix-decoder-only"):
        # Convert with the checkpoint's own head count, then compare with the model's shapes.
        return convert_hf.from_hf(init.tensors, init.model_cfg, init.layout, expected, source=source)
    out = {}
    for path, (array, reshape_to) in init.tensors.items():  # model order: embedding, encoder, decoder, logits
        want = expected.get(path)
        if want is None:
            raise CheckpointMismatchError(f"{source} does not fit the model: it has {'/'.join(path)} "
                                          f"{tuple(array.shape)}, which the model does not have")
        value = array.reshape(reshape_to) if reshape_to is not None else array
        if tuple(value.shape) != tuple(want):
            raise CheckpointMismatchError(
                f"{source} does not fit the model: first mismatching parameter {'/'.join(path)} has shape "
                f"{tuple(value.shape)} in the checkpoint, the model needs {tuple(want)}")
        out[path] = np.ascontiguousarray(value, np.float32)
    missing = [p for p in expected if p not in out]
    if missing:
        raise CheckpointMismatchError(f"{source} has no parameter for {'/'.join(missing[0])} of the model "
                                      f"(shape {tuple(expected[missing[0]])})")
    return convert_hf.unflatten(out)
