"""Throughput bookkeeping: FLOPs of a training row, the peak FLOPs of the device, and the progress line.

Two token rates are reported, because packing is the point of the corpus:

    real tokens/s    non-padding inputs + targets tokens per second (what the data is worth)
    slot tokens/s    all positions per second, padding included (what the hardware computes)

MFU = model FLOPs per second / (peak bf16 dense FLOPs per device * devices). Model FLOPs are the
matmul FLOPs of forward + backward (3x forward) over all positions, attention scores included,
padding included (the accelerator computes them); `None` where the peak is unknown (CPUs).
"""
from __future__ import annotations

import time
from typing import Mapping

from trainer.config import ModelConfig

# Dense bfloat16 peak FLOP/s per JAX device, matched as lowercase substrings of `device.device_kind`
# in this order (more specific names first). Vendor datasheet figures, without sparsity.
PEAK_FLOPS = (
    ("h100 pcie", 756e12),
    ("h100", 989e12),
    ("h200", 989e12),
    ("gh200", 989e12),
    ("a100", 312e12),
    ("tpu v4", 275e12),
    ("tpu v5 lite", 197e12),
    ("tpu v5e", 197e12),
    ("tpu v5", 459e12),
    ("tpu v6 lite", 918e12),
    ("tpu v6e", 918e12),
)


def peak_flops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    for name, flops in PEAK_FLOPS:
        if name in kind:
            return flops
    return None


def forward_flops_per_row(cfg: ModelConfig, layout: str, lengths: Mapping[str, int]) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward pass over one packed row.

    >>> import dataclasses; from trainer.config import MODEL_SIZES
    >>> forward_flops_per_row(dataclasses.replace(MODEL_SIZES["tiny"], vocab_size=128), "decoder", {"targets": 4})
    729088.0
    """
    d, hk, f, v = cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff, cfg.vocab_size
    per_token = 4 * d * hk + 3 * d * f  # q, k, v, o projections and the gated MLP

    def self_attention_stack(layers: int, n: int) -> int:
        return layers * (n * per_token + 2 * n * n * hk)  # + scores and weighted values

    t = lengths["targets"]
    if layout == "decoder":
        macs = self_attention_stack(cfg.num_decoder_layers, t) + t * d * v
    else:
        i = lengths["inputs"]
        cross = cfg.num_decoder_layers * (2 * t * d * hk + 2 * i * d * hk + 2 * t * i * hk)
        macs = (self_attention_stack(cfg.num_encoder_layers, i) + self_attention_stack(cfg.num_decoder_layers, t)
                + cross + t * d * v)
    return 2.0 * macs


def train_flops_per_row(cfg: ModelConfig, layout: str, lengths: Mapping[str, int]) -> float:
    return 3.0 * forward_flops_per_row(cfg, layout, lengths)


class Meter:
    """Counts rows and tokens between `reset()`s; compile, eval and checkpoint time are kept out by
    resetting after them."""

    def __init__(self, flops_per_row: float, peak_total: float | None):
        self.flops_per_row, self.peak_total = flops_per_row, peak_total
        self.reset()

    def reset(self) -> None:
        self.start, self.steps, self.rows, self.real, self.slots = time.perf_counter(), 0, 0, 0, 0

    def add(self, rows: int, real_tokens: int, slot_tokens: int) -> None:
        self.steps += 1
        self.rows += rows
        self.real += real_tokens
        self.slots += slot_tokens

    def rates(self) -> dict:
        wall = max(time.perf_counter() - self.start, 1e-9)
        out = {"real_tokens_per_s": self.real / wall, "slot_tokens_per_s": self.slots / wall,
               "s_per_step": wall / max(self.steps, 1), "mfu": None}
        if self.peak_total:
            out["mfu"] = self.rows * self.flops_per_row / wall / self.peak_total
        return out


def progress_line(step: int, total: int, metrics: Mapping[str, float], rates: Mapping[str, float | None]) -> str:
    """e.g. `step 4/4 | loss 9.5247 (ce 9.5156) | 855 real tok/s (1,166 slot tok/s) | mfu n/a | 4.390 s/step`"""
    mfu = "n/a" if rates.get("mfu") is None else f"{100 * rates['mfu']:.1f}%"
    return (f"step {step:>{len(str(total))}}/{total} | loss {metrics['loss']:.4f} (ce {metrics['cross_entropy']:.4f}) | "
            f"{rates['real_tokens_per_s']:,.0f} real tok/s ({rates['slot_tokens_per_s']:,.0f} slot tok/s) | "
            f"mfu {mfu} | {rates['s_per_step']:.3f} s/step")
