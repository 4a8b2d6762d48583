"""Pre-flight memory check: XLA's memory analysis of the compiled train step against the device.

`estimate` reads `compiled.memory_analysis()`: arguments (parameters, optimizer state, batch) +
outputs + temporaries (activations kept for the backward pass, gradients, workspace) - outputs that
alias donated arguments. The device's memory is `memory_stats()["bytes_limit"]` on GPU/TPU and the
host's available RAM on CPU (or `--memory_limit_gb`). A step that does not fit stops the run before
the first step with the estimate, the device memory and flags that would fit, instead of an
out-of-memory crash minutes later.

Temporaries scale about linearly with the rows in flight, which is what the suggested
`--grad_accum` / `--batch_size` are computed from; parameters and optimizer state do not shrink.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from trainer.errors import ConfigError

GiB = 1024 ** 3
HEADROOM = 0.9  # use at most this share of the device's memory


class MemoryError_(ConfigError):
    """The compiled train step needs more memory than the device has."""


@dataclass(frozen=True)
class MemoryEstimate:
    arguments: int
    outputs: int
    temporaries: int
    aliased: int
    device_bytes: int
    device_source: str

    @property
    def total(self) -> int:
        return self.arguments + self.outputs + self.temporaries - self.aliased

    @property
    def fits(self) -> bool:
        return self.total <= HEADROOM * self.device_bytes

    def describe(self) -> str:
        return (f"estimate {self.total / GiB:.2f} GiB (arguments {self.arguments / GiB:.2f}, temporaries "
                f"{self.temporaries / GiB:.2f}, outputs {max(self.outputs - self.aliased, 0) / GiB:.2f}) of "
                f"{self.device_bytes / GiB:.2f} GiB {self.device_source}")


def device_memory(device, limit_gb: float = 0.0) -> tuple[int, str]:
    """(bytes, where the number comes from) for one device."""
    if limit_gb > 0:
        return int(limit_gb * GiB), "(--memory_limit_gb)"
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - not implemented on some backends
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"on {device.device_kind}"
    import psutil

    return int(psutil.virtual_memory().available), f"available RAM ({device.platform})"


def estimate(compiled, device, limit_gb: float = 0.0) -> MemoryEstimate | None:
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    device_bytes, source = device_memory(device, limit_gb)
    return MemoryEstimate(int(analysis.argument_size_in_bytes), int(analysis.output_size_in_bytes),
                          int(analysis.temp_size_in_bytes), int(analysis.alias_size_in_bytes), device_bytes, source)


def advice(est: MemoryEstimate, cfg, model_cfg) -> str:
    """The refusal: estimate, device memory, and flags that would fit by a linear estimate of temporaries."""
    budget = HEADROOM * est.device_bytes - (est.total - est.temporaries)
    head = (f"the train step would not fit: {est.describe()} (batch_size {cfg.batch_size}, grad_accum "
            f"{cfg.grad_accum}, remat {model_cfg.remat}, lengths as in the corpus)")
    if budget <= 0:
        return head + ("; parameters and optimizer state alone exceed it: use a smaller --model, more devices "
                       "(--model_parallelism) or a larger machine")
    rows_in_flight = cfg.batch_size // cfg.grad_accum
    factor = est.temporaries / budget
    fitting_rows = max(int(rows_in_flight / factor), 0)
    suggestions = []
    if model_cfg.remat in ("none", "dots"):
        suggestions.append("--remat full (recompute each layer in the backward pass)")
    if fitting_rows >= 1:
        accum = next((n for n in range(math.ceil(cfg.batch_size / fitting_rows), cfg.batch_size + 1)
                      if cfg.batch_size % n == 0), cfg.batch_size)
        suggestions.append(f"--grad_accum {accum} (same batch of {cfg.batch_size}, {cfg.batch_size // accum} rows at a time)")
        suggestions.append(f"--batch_size {fitting_rows * cfg.grad_accum}" + (f" --grad_accum {cfg.grad_accum}"
                                                                               if cfg.grad_accum > 1 else ""))
    else:
        suggestions.append("--grad_accum equal to --batch_size with --remat full, or shorter sequences")
    return head + "; flags that would fit: " + "; or ".join(suggestions)
