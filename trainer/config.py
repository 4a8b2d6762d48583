"""Every knob of a training run, as two frozen dataclasses: `ModelConfig` and `TrainConfig`.

The CLI builds its flags from `TrainConfig`'s fields (the `help` metadata is the flag's help), and
`run` prints the resolved pair as JSON before the first step, so a log always says what ran.

Model sizes follow the published T5.1.1 checkpoints (t5-v1_1-small ... xxl): same widths, depths,
head counts and MLP sizes. Only the vocabulary differs: it comes from the corpus (see
`resolve_model_config`), so `base` on the shipped 8k vocabulary is smaller than T5's 32128-row one.

    >>> MODEL_SIZES["base"].d_model, MODEL_SIZES["base"].num_encoder_layers
    (768, 12)
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

VOCAB_MULTIPLE = 128  # T5 pads its 32000-piece vocabulary to 32128 rows; we round up the same way


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a T5.1.1-style model (RMSNorm, gated-GELU MLP, relative position buckets, no
    biases, untied output layer). `vocab_size` is the number of embedding rows, at least the
    corpus vocabulary size. `num_encoder_layers` is ignored by the decoder-only model."""

    name: str
    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_encoder_layers: int
    num_decoder_layers: int
    vocab_size: int = 0  # 0 until resolved against a corpus
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    dropout_rate: float = 0.0
    activation_dtype: str = "float32"  # "bfloat16" on accelerators; parameters are always float32
    remat: str = "none"  # rematerialization policy per layer (trainer.model.REMAT_POLICIES)

    def architecture(self) -> dict:
        """The fields a checkpoint's parameters depend on (dropout and dtype may change on resume)."""
        d = dataclasses.asdict(self)
        for k in ("dropout_rate", "activation_dtype", "remat"):
            d.pop(k)
        return d


MODEL_SIZES: dict[str, ModelConfig] = {
    # A test size: two layers each side, trains in seconds on one CPU core.
    "tiny": ModelConfig("tiny", d_model=64, num_heads=4, d_kv=16, d_ff=128, num_encoder_layers=2, num_decoder_layers=2),
    # T5.1.1 published sizes (github.com/google-research/text-to-text-transfer-transformer, released_checkpoints.md).
    "small": ModelConfig("small", d_model=512, num_heads=6, d_kv=64, d_ff=1024, num_encoder_layers=8, num_decoder_layers=8),
    "base": ModelConfig("base", d_model=768, num_heads=12, d_kv=64, d_ff=2048, num_encoder_layers=12, num_decoder_layers=12),
    "large": ModelConfig("large", d_model=1024, num_heads=16, d_kv=64, d_ff=2816, num_encoder_layers=24, num_decoder_layers=24),
    "xl": ModelConfig("xl", d_model=2048, num_heads=32, d_kv=64, d_ff=5120, num_encoder_layers=24, num_decoder_layers=24),
    "xxl": ModelConfig("xxl", d_model=4096, num_heads=64, d_kv=64, d_ff=10240, num_encoder_layers=24, num_decoder_layers=24),
}


def _help(text: str, choices=None, **kw):
    return field(metadata={"help": text, "choices": tuple(choices) if choices else None}, **kw)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the Flan/T5 finetuning recipe: Adafactor, constant learning
    rate 1e-3, dropout 0.1, z-loss 1e-4 (as in T5X's finetuning configs)."""

    corpus: str = _help("corpus directory written by `flanmix build` (holds manifest.json)")
    out: str = _help("output directory: checkpoints/, metrics.jsonl, config.json; resumes if it has checkpoints")
    model: str = _help("model size (T5.1.1 sizes; tiny is for tests); auto = the --init checkpoint's, else small",
                       choices=("auto", *MODEL_SIZES), default="auto")
    init: str = _help("start from this checkpoint instead of random weights: a Hugging Face T5.1.1 directory "
                      "(safetensors or pytorch_model.bin; local, gs:// or s3://), a T5X checkpoint directory, or a "
                      "`flanmix export` directory; ignored when --out already has checkpoints (resume)", default="")
    steps: int = _help("train until this global step (a resumed run continues up to it)", default=1000)
    batch_size: int = _help("packed rows per step (global, over all devices)", default=32)
    learning_rate: float = _help("constant Adafactor learning rate", default=1e-3)
    dropout_rate: float = _help("dropout on embeddings, attention weights, MLP and residual branches", default=0.1)
    z_loss: float = _help("weight of log(Z)^2 per target token (keeps logits normalized); 0 disables", default=1e-4)
    loss_normalizing_factor: float = _help(
        "divide the summed loss by this constant instead of the batch's real target tokens (0); T5X's finetuning "
        "configs for T5.1.1 checkpoints use 233472 (= 2048 x 114, the pretraining batch x target length)",
        default=0.0)
    seed: int = _help("parameter init, batch order and dropout all derive from this key", default=0)
    layout: str = _help("expected corpus layout; auto takes the manifest's", choices=("auto", "encdec", "decoder"),
                        default="auto")
    data_format: str = _help("which shards to read: parquet (pyarrow) or tfrecord (tf.data)",
                             choices=("parquet", "tfrecord"), default="parquet")
    eval_holdout_every: int = _help(
        "hold out row i of every shard when i % N == 0 (never trained on) for eval loss; 0 = no eval", default=20)
    eval_every: int = _help("steps between eval-loss passes over all held-out rows (and at the end); 0 = end only", default=500)
    checkpoint_every: int = _help("steps between checkpoints (one is always written at the end)", default=500)
    keep_checkpoints: int = _help("how many recent checkpoints to keep", default=3)
    log_every: int = _help("steps between progress lines", default=10)
    model_parallelism: int = _help("size of the mesh's model axis; the data axis gets the remaining devices", default=1)
    activation_dtype: str = _help("auto = bfloat16 on GPU/TPU, float32 on CPU", choices=("auto", "float32", "bfloat16"),
                                  default="auto")
    remat: str = _help("activation rematerialization per layer: none (keep all), full (keep layer inputs only), "
                       "dots (keep weight matmuls, recompute attention); auto = none if the step fits the device "
                       "memory, else full", choices=("auto", "none", "full", "dots"), default="auto")
    grad_accum: int = _help("split each batch into N micro-batches whose gradients are summed (same update as the "
                            "whole batch, about 1/N of the activation memory); 0 = auto: 1, or the smallest N that "
                            "fits the device (with --remat auto, after trying full rematerialization)", default=0)
    memory_check: bool = _help("estimate the step's memory from the compiled program before the first step and stop "
                               "if it exceeds the device's", default=True)
    memory_limit_gb: float = _help("memory the step may use per device, in GiB; 0 = the device's (CPU: available RAM)",
                                   default=0.0)
    vocab_size: int = _help("embedding rows; 0 = corpus vocabulary rounded up to a multiple of 128", default=0)
    inputs_length: int = _help("expected inputs length; 0 = the manifest's (a different value is refused)", default=0)
    targets_length: int = _help("expected targets length; 0 = the manifest's (a different value is refused)", default=0)

    def __post_init__(self):
        from trainer.errors import ConfigError

        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} {getattr(self, f.name)!r} is not one of {', '.join(choices)}")
        positive = ("steps", "batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "model_parallelism")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("eval_holdout_every", "eval_every", "vocab_size", "inputs_length", "targets_length"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more (got {getattr(self, name)})")
        if self.grad_accum < 0:
            raise ConfigError(f"grad_accum must be 0 (auto) or more (got {self.grad_accum})")
        if self.grad_accum and self.batch_size % self.grad_accum:
            raise ConfigError(f"batch_size {self.batch_size} is not a multiple of grad_accum {self.grad_accum}")
        if self.loss_normalizing_factor < 0:
            raise ConfigError(f"loss_normalizing_factor must be 0 or more (got {self.loss_normalizing_factor})")
        if not 0.0 <= self.dropout_rate < 1.0 or self.learning_rate <= 0 or self.z_loss < 0:
            raise ConfigError(f"need 0 <= dropout_rate < 1, learning_rate > 0, z_loss >= 0 (got {self.dropout_rate}, "
                              f"{self.learning_rate}, {self.z_loss})")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def round_up(n: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def base_model_config(name: str) -> ModelConfig:
    if name == "auto":
        name = "small"
    if name not in MODEL_SIZES:
        from trainer.errors import ConfigError

        raise ConfigError(f"unknown model size {name!r}; known sizes: {', '.join(MODEL_SIZES)}")
    return MODEL_SIZES[name]


def resolve_model_config(cfg: TrainConfig, corpus_vocab_size: int, backend: str,
                         init_model: ModelConfig | None = None) -> ModelConfig:
    """The model for this run: the named size, with the vocabulary, dropout and activation dtype filled in.

    `init_model`: the architecture of the --init checkpoint; with --model auto it is the run's model, and
    its vocabulary rows are kept unless --vocab_size says otherwise.

    `backend` is `jax.default_backend()`; bfloat16 activations are used on "gpu"/"tpu" unless the
    config says otherwise (CPU float32 keeps tests exact and CPUs have slow bfloat16 matmuls).
    """
    if cfg.activation_dtype == "auto":
        dtype = "bfloat16" if backend in ("gpu", "tpu", "cuda", "rocm") else "float32"
    else:
        dtype = cfg.activation_dtype
    remat = "none" if cfg.remat == "auto" else cfg.remat  # auto: `trainer.train.setup` may switch to full
    if init_model is not None and cfg.model == "auto":
        return dataclasses.replace(init_model, vocab_size=cfg.vocab_size or init_model.vocab_size,
                                   dropout_rate=cfg.dropout_rate, activation_dtype=dtype, remat=remat)
    return dataclasses.replace(
        base_model_config(cfg.model),
        vocab_size=cfg.vocab_size or (init_model.vocab_size if init_model else round_up(corpus_vocab_size)),
        dropout_rate=cfg.dropout_rate,
        activation_dtype=dtype,
        remat=remat,
    )
