"""The training loop. `train_step` and `eval_sums` are pure functions of (state, batch); `run` wires
corpus, model, mesh, checkpoints and logging around them.

State is a plain dict {"step", "params", "opt_state"} (immutable: each step returns a new one).
Step s (0-based) trains on `TrainBatches.batch(s)` with dropout key fold_in(fold_in(key(seed), DROPOUT_KEY), s)
and yields state["step"] == s + 1, so a run restored from step s continues bit for bit.

A run on the demo corpus (2048/512 rows), the README's CPU-sized command, on a 2-core machine shared
with other jobs (9 min wall, 2.5 min of CPU time):

    $ flanmix train --corpus out/demo --model tiny --steps 20 --batch_size 2 --log_every 5 --out ckpt/
    flanmix train: config {"activation_dtype": "auto", "batch_size": 2, "checkpoint_every": 500, ...}
    flanmix train: model {"activation_dtype": "float32", "d_ff": 128, ...} (1,229,824 parameters)
    flanmix train: memory estimate 1.48 GiB (arguments 0.01, temporaries 1.47, outputs 0.00) of 16.45 GiB available RAM (cpu) ...
    flanmix train: corpus out/demo: layout encdec, 249 rows in 1 parquet shard(s), lengths inputs 2048/targets 512, ...
    flanmix train: mesh {'data': 1, 'model': 1} over 1 cpu device(s), 1 host(s)
    step 1/20 | loss 9.5235 (ce 9.5144) | compile + first step 22.3 s
    step  5/20 | loss 9.4924 (ce 9.4833) | 185 real tok/s (191 slot tok/s) | mfu n/a | 26.829 s/step
    ...
    step 20/20 | loss 9.3471 (ce 9.3380) | 243 real tok/s (256 slot tok/s) | mfu n/a | 20.005 s/step
    eval step 20: loss 9.1821 over 5,735 held-out target tokens
    flanmix train: done, step 20; checkpoints in .../ckpt/checkpoints
"""
from __future__ import annotations

import dataclasses
import functools
import math
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from trainer import data as data_lib
from trainer import sharding
from trainer.checkpoint import Checkpoints, check_resume, run_meta
from trainer.config import ModelConfig, TrainConfig, resolve_model_config
from trainer.losses import loss_sums, mean_loss, model_inputs
from trainer.metrics import Meter, peak_flops, progress_line, train_flops_per_row
from trainer.model import build_model

PARAMS_KEY, DROPOUT_KEY = 0, 1  # fold_in tags of the run's root key


ATTENTION_KERNELS = {"query": "in", "key": "in", "value": "in", "out": "out"}


def two_d_view(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Run `inner` on the 2-D view of every 3-D attention kernel: (d_model, heads, d_kv) -> (d_model, heads*d_kv)
    and (heads, d_kv, d_model) -> (heads*d_kv, d_model), the shapes T5X stores. Adafactor then factors their
    second moments like any other matrix (on the 3-D arrays optax's heuristic looks at the two largest axes,
    d_model and d_kv=64 < 128, and keeps a full second moment)."""

    def view(tree):
        def to_2d(path, x):
            kind = ATTENTION_KERNELS.get(getattr(path[-1], "key", None)) if x.ndim == 3 else None
            if kind == "in":
                return x.reshape(x.shape[0], -1)
            if kind == "out":
                return x.reshape(-1, x.shape[-1])
            return x
        return jax.tree_util.tree_map_with_path(to_2d, tree)

    def init(params):
        return inner.init(view(params))

    def update(updates, state, params=None):
        flat_updates, state = inner.update(view(updates), state, view(params) if params is not None else None)
        return jax.tree.map(lambda u, p: u.reshape(p.shape), flat_updates, updates), state

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Adafactor as in T5 finetuning: factored second moments (attention kernels by their 2-D view, see
    `two_d_view`), decay 0.8, update clipping 1.0, updates scaled by parameter RMS, no momentum, constant
    learning rate."""
    return two_d_view(optax.adafactor(learning_rate=cfg.learning_rate, decay_rate=0.8, clipping_threshold=1.0,
                                      multiply_by_parameter_scale=True, momentum=None))


def dummy_batch(layout: data_lib.Layout, lengths: dict, rows: int = 1) -> dict[str, np.ndarray]:
    return {name: np.zeros((rows, lengths[key]), np.int32) for name, key in layout.features}


def train_step(state: dict, batch: dict, root_key: jax.Array, *, model, tx, layout: str, z_loss: float,
               grad_accum: int = 1, loss_normalizing_factor: float = 0.0):
    """One Adafactor step on one global batch; returns (new state, scalar metrics).

    The gradient is that of the summed loss divided by the batch's loss tokens. With `grad_accum` N the
    batch is split into N micro-batches (rows i*B/N ... of each, in order), each one's summed-loss gradient
    is computed in turn (a `lax.scan`, so only one micro-batch's activations are alive) and the sums are
    divided by the whole batch's tokens: the same update as N = 1 up to float summation order. Micro-batch
    i draws dropout from fold_in(step key, i).

    `loss_normalizing_factor` > 0 divides the summed loss by that constant instead of the batch's tokens
    (T5X's `loss_normalizing_factor`; its T5.1.1 finetuning configs use 2048 * 114 = 233472, the
    pretraining batch times target length). The logged loss stays per target token either way."""
    dropout_key = jax.random.fold_in(jax.random.fold_in(root_key, DROPOUT_KEY), state["step"])

    def summed(params, micro, key):
        kwargs, targets, weights = model_inputs(layout, micro)
        logits = model.apply({"params": params}, **kwargs, deterministic=False, rngs={"dropout": key})
        sums = loss_sums(logits, targets, weights, z_loss)
        return sums["cross_entropy"] + sums["z_loss"], sums

    grad_fn = jax.grad(summed, has_aux=True)
    if grad_accum == 1:
        grads, sums = grad_fn(state["params"], batch, dropout_key)
    else:
        micro = jax.tree.map(lambda a: a.reshape((grad_accum, a.shape[0] // grad_accum) + a.shape[1:]), batch)

        def body(carry, xs):
            index, micro_batch = xs
            g, s = grad_fn(state["params"], micro_batch, jax.random.fold_in(dropout_key, index))
            return jax.tree.map(jnp.add, carry, (g, s)), None

        zeros = (jax.tree.map(jnp.zeros_like, state["params"]),
                 {k: jnp.zeros((), jnp.float32) for k in ("cross_entropy", "z_loss", "weight")})
        (grads, sums), _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum), micro))
    tokens = jnp.maximum(sums["weight"], 1.0)
    normalizer = loss_normalizing_factor if loss_normalizing_factor > 0 else tokens
    grads = jax.tree.map(lambda g: g / normalizer, grads)
    loss = mean_loss(sums)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
    metrics = {"loss": loss, "cross_entropy": sums["cross_entropy"] / tokens, "z_loss": sums["z_loss"] / tokens,
               "loss_tokens": sums["weight"], "grad_norm": optax.tree.norm(grads)}
    return new_state, metrics


def eval_sums(params, batch: dict, *, model, layout: str) -> dict:
    """Summed cross-entropy and loss-token count of one batch, without dropout or z-loss."""
    kwargs, targets, weights = model_inputs(layout, batch)
    logits = model.apply({"params": params}, **kwargs, deterministic=True)
    return loss_sums(logits, targets, weights, 0.0)


@dataclass
class Setup:
    """Everything `run` derives from the config before the first step; also used by the benchmark."""

    corpus: data_lib.Corpus
    model_cfg: ModelConfig
    model: object
    tx: optax.GradientTransformation
    mesh: jax.sharding.Mesh
    root_key: jax.Array
    init_state: Callable  # () -> state, sharded
    abstract_state: object  # ShapeDtypeStructs with shardings, for restoring
    step_fn: Callable  # jitted train_step(state, batch, root_key)
    eval_fn: Callable  # jitted eval_sums(params, batch)
    num_params: int
    memory: object = None  # trainer.memory.MemoryEstimate of the compiled train step, when it was checked
    grad_accum: int = 1  # micro-batches per step (resolved from --grad_accum 0 = auto)


def check_corpus(cfg: TrainConfig, init_model: ModelConfig | None = None) -> tuple[data_lib.Corpus, ModelConfig]:
    """The cheap checks, before anything compiles: corpus layout, lengths and vocabulary vs the model.
    `init_model`: the architecture of the --init checkpoint or of the run being resumed."""
    corpus = data_lib.open_corpus(cfg.corpus, cfg.data_format, cfg.layout,
                                  {"inputs": cfg.inputs_length, "targets": cfg.targets_length})
    model_cfg = resolve_model_config(cfg, corpus.vocab_size, jax.default_backend(), init_model)
    data_lib.check_model_vocab(corpus, model_cfg.vocab_size)
    return corpus, model_cfg


def setup(cfg: TrainConfig, init_model: ModelConfig | None = None, init=None) -> Setup:
    """Check the corpus, build the model and optimizer, and compile init, train and eval steps.
    `init`: a read `trainer.init_checkpoint.InitCheckpoint` whose weights replace the random ones."""
    corpus, model_cfg = check_corpus(cfg, init_model)
    mesh = sharding.make_mesh(cfg.model_parallelism)
    sharding.check_batch_size(cfg.batch_size, mesh)
    layout = corpus.layout.name
    model = build_model(model_cfg, layout)
    tx = make_optimizer(cfg)
    root_key = jax.random.key(cfg.seed)
    init_kwargs, _, _ = model_inputs(layout, dummy_batch(corpus.layout, corpus.lengths))

    def boxed_init(key):
        return model.init({"params": key}, **init_kwargs, deterministic=True)["params"]

    boxed = jax.eval_shape(boxed_init, jax.random.fold_in(root_key, PARAMS_KEY))
    param_shardings = sharding.param_shardings(boxed, mesh)
    init_params = None
    if init is not None:  # convert and shape-check the checkpoint before compiling anything (a refusal is instant)
        from flax import linen as nn

        init_params = checked_init_params(init, model_cfg, nn.unbox(boxed))

    def init_fn(key):
        from flax import linen as nn

        params = jax.lax.with_sharding_constraint(nn.unbox(boxed_init(jax.random.fold_in(key, PARAMS_KEY))), param_shardings)
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    compiled_init = jax.jit(init_fn).lower(root_key).compile()
    state_shardings = compiled_init.output_shardings
    abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                  jax.eval_shape(init_fn, root_key), state_shardings)
    step_fn, model, model_cfg, grad_accum, estimate = compile_step(cfg, model_cfg, layout, tx, mesh, abstract_state, state_shardings,
                                                       root_key, corpus)
    eval_fn = jax.jit(functools.partial(eval_sums, model=model, layout=layout))
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_state["params"]))
    init_state = lambda: compiled_init(root_key)  # noqa: E731
    if init_params is not None:
        init_state = pretrained_init(init_params, abstract_state, state_shardings, param_shardings, tx)
    return Setup(corpus, model_cfg, model, tx, mesh, root_key, init_state, abstract_state,
                 step_fn, eval_fn, num_params, estimate, grad_accum)


def compile_step(cfg: TrainConfig, model_cfg: ModelConfig, layout: str, tx, mesh, abstract_state, state_shardings,
                 root_key, corpus):
    """Compile the train step for the global batch shape and check its memory before anything runs.

    `--remat auto` tries no rematerialization first and falls back to full rematerialization when the
    estimate does not fit. A step that does not fit even so stops the run (`memory_lib.check_fits`)."""
    from trainer import memory as memory_lib

    batch_struct = {name: jax.ShapeDtypeStruct((cfg.batch_size, corpus.lengths[key]), jnp.int32,
                                               sharding=sharding.batch_sharding(mesh))
                    for name, key in corpus.layout.features}
    device = jax.devices()[0]
    data_axis = mesh.shape["data"]

    def build(remat: str, accum: int):
        mcfg = dataclasses.replace(model_cfg, remat=remat)
        model = build_model(mcfg, layout)
        jitted = jax.jit(functools.partial(train_step, model=model, tx=tx, layout=layout, z_loss=cfg.z_loss,
                                           grad_accum=accum, loss_normalizing_factor=cfg.loss_normalizing_factor),
                         out_shardings=(state_shardings, None), donate_argnums=0)
        compiled = jitted.lower(abstract_state, batch_struct, root_key).compile()
        estimate = memory_lib.estimate(compiled, device, cfg.memory_limit_gb) if cfg.memory_check else None
        return compiled, model, mcfg, accum, estimate

    def accum_choices():  # divisors of the batch that leave whole rows per device in each micro-batch
        return [n for n in range(2, cfg.batch_size + 1)
                if cfg.batch_size % n == 0 and (cfg.batch_size // n) % data_axis == 0]

    remats = [model_cfg.remat] if cfg.remat != "auto" else ["none", "full"]
    accum = cfg.grad_accum or 1
    result = None
    for remat in remats:
        result = build(remat, accum)
        if result[4] is None or result[4].fits:
            return result
    if cfg.grad_accum == 0:  # auto: the smallest accumulation that fits, guessed linearly and then checked
        est, rows = result[4], cfg.batch_size
        budget = memory_lib.HEADROOM * est.device_bytes - (est.total - est.temporaries)
        guess = math.ceil(est.temporaries / budget) if budget > 0 else rows
        for n in [n for n in accum_choices() if n >= guess]:
            result = build(result[2].remat, n)
            if result[4].fits:
                return result
    raise memory_lib.MemoryError_(memory_lib.advice(result[4], dataclasses.replace(cfg, grad_accum=result[3]), result[2]))


def checked_init_params(init, model_cfg: ModelConfig, abstract_params) -> dict:
    """The --init checkpoint's parameters in the model's tree order, refusing the first that does not fit."""
    from trainer.convert_hf import flatten, unflatten
    from trainer.init_checkpoint import params_for

    expected = {p: tuple(a.shape) for p, a in flatten(abstract_params).items()}
    flat = flatten(params_for(init, model_cfg, expected))
    # The same tree structure (dict key order) as the abstract state, so shardings line up leaf for leaf.
    return unflatten({p: flat[p] for p in expected})


def pretrained_init(params, abstract_state, state_shardings, param_shardings, tx) -> Callable:
    """() -> step-0 state holding the checkpoint's (already checked) parameters."""

    def make_state(p):
        return {"step": jnp.zeros((), jnp.int32), "params": p, "opt_state": tx.init(p)}

    def init_state():
        placed = jax.device_put(params, param_shardings)
        return jax.jit(make_state, out_shardings=state_shardings)(placed)

    return init_state


def evaluate(s: Setup, params, cfg: TrainConfig) -> dict:
    """Cross-entropy per target token over all held-out rows."""
    totals = {"cross_entropy": 0.0, "weight": 0.0}
    for batch in data_lib.eval_batches(s.corpus, cfg.batch_size, cfg.eval_holdout_every,
                                       jax.process_index(), jax.process_count()):
        sums = jax.device_get(s.eval_fn(params, sharding.put_batch(batch, s.mesh)))
        totals = {k: totals[k] + float(sums[k]) for k in totals}
    return {"eval_loss": totals["cross_entropy"] / max(totals["weight"], 1.0), "eval_tokens": int(totals["weight"])}


def corpus_fingerprint(corpus: data_lib.Corpus) -> str:
    """sha256 over what decides the rows a step sees: layout, lengths, vocabulary and each shard's file name and
    row count (not the corpus' location, so a corpus copied to a bucket is the same corpus)."""
    import hashlib

    parts = [corpus.layout.name, json.dumps(dict(corpus.lengths), sort_keys=True), corpus.vocab_sha256]
    parts += [f"{s.path.rsplit('/', 1)[-1]}:{s.num_rows}" for s in corpus.shards]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def has_checkpoints(out: str) -> bool:
    """Whether OUT/checkpoints may hold a checkpoint (always assumed for a bucket URL)."""
    directory = os.path.join(out, "checkpoints")
    return "://" in out or (os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory)))


def real_tokens(batch: dict) -> int:
    return int(sum(np.count_nonzero(v) for k, v in batch.items() if k.endswith("segment_ids")))


@dataclass
class RunResult:
    """What a run did: `history` has one entry per step trained in this call, `evals` one per eval."""

    first_step: int
    last_step: int
    history: list = field(default_factory=list)  # {"step", "loss", "cross_entropy", "z_loss", ...}
    evals: list = field(default_factory=list)  # {"step", "eval_loss", "eval_tokens"}
    num_params: int = 0


def run(cfg: TrainConfig, log: Callable[[str], None] = print) -> RunResult:
    """Train until global step `cfg.steps`, resuming from the newest checkpoint in `cfg.out/checkpoints`."""
    log("flanmix train: config " + cfg.to_json())
    saved_meta, init, init_model = None, None, None
    if has_checkpoints(cfg.out):
        checkpoints = Checkpoints(os.path.join(cfg.out, "checkpoints"), keep=cfg.keep_checkpoints)
        latest = checkpoints.latest_step()
        saved_meta = checkpoints.restore_meta(latest) if latest is not None else None
        if saved_meta is not None:  # --model auto resumes the saved architecture (e.g. one from --init)
            init_model = ModelConfig(**saved_meta["model"])
    elif cfg.init:
        from trainer.init_checkpoint import read_init

        init = read_init(cfg.init)
        init_model = init.model_cfg
        log("flanmix train: init from " + init.describe())
    corpus, model_cfg = check_corpus(cfg, init_model)
    layout = corpus.layout.name
    if init is not None:
        from trainer.init_checkpoint import check_fits_corpus

        check_fits_corpus(init, layout, corpus.vocab_sha256)
        if init.vocab_sha256 is None:
            log(f"flanmix train: warning: {init.path} has no spiece.model; cannot check that the corpus vocabulary "
                "is the checkpoint's")
    meta = run_meta(model_cfg.architecture(), layout, corpus.vocab_sha256, corpus.vocab_size,
                    dict(corpus.lengths), dataclasses.asdict(cfg))
    meta["corpus_fingerprint"] = corpus_fingerprint(corpus)
    if saved_meta is None:
        checkpoints = Checkpoints(os.path.join(cfg.out, "checkpoints"), keep=cfg.keep_checkpoints)
    latest = checkpoints.latest_step()
    if latest is not None:  # refuse a checkpoint of another model or vocabulary before compiling anything
        check_resume(saved_meta or checkpoints.restore_meta(latest), meta, checkpoints.directory)
        if cfg.init:
            log(f"flanmix train: resuming {checkpoints.directory}; --init {cfg.init} is not read")
    s = setup(cfg, init_model, init)
    devices = jax.devices()
    log("flanmix train: model " + json.dumps(dataclasses.asdict(s.model_cfg), sort_keys=True)
        + f" ({s.num_params:,} parameters)")
    if s.memory is not None:
        log(f"flanmix train: memory {s.memory.describe()} (remat {s.model_cfg.remat}, batch {cfg.batch_size}, "
            f"grad_accum {s.grad_accum})")
    log(f"flanmix train: {corpus.summary()}; {data_lib.count_held_out(corpus, cfg.eval_holdout_every)} rows held out")
    log(f"flanmix train: mesh {dict(s.mesh.shape)} over {len(devices)} {devices[0].device_kind} device(s), "
        f"{jax.process_count()} host(s)")

    local_out = "://" not in cfg.out  # metrics.jsonl and config.json are written for local --out only
    if local_out:
        os.makedirs(cfg.out, exist_ok=True)
    if latest is not None:
        state = checkpoints.restore_state(latest, s.abstract_state)
        log(f"flanmix train: resumed from {checkpoints.directory} at step {latest}")
    else:
        state = s.init_state()
    first = int(jax.device_get(state["step"]))
    result = RunResult(first_step=first, last_step=first, num_params=s.num_params)
    if jax.process_index() == 0 and local_out:
        with open(os.path.join(cfg.out, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(s.model_cfg)}, f,
                      indent=2, sort_keys=True)
    metrics_file = None
    if local_out and jax.process_index() == 0:
        metrics_file = open(os.path.join(cfg.out, "metrics.jsonl"), "a", encoding="utf-8")

    def record(entry: dict) -> None:
        if metrics_file:
            metrics_file.write(json.dumps(entry, sort_keys=True) + "\n")
            metrics_file.flush()

    batches = data_lib.TrainBatches(corpus, cfg.batch_size, cfg.eval_holdout_every, cfg.seed,
                                    jax.process_index(), jax.process_count())
    peak = peak_flops(devices[0].device_kind)
    meter = Meter(train_flops_per_row(s.model_cfg, layout, corpus.lengths), peak * len(devices) if peak else None)
    slots_per_row = sum(corpus.feature_length(n) for n in corpus.layout.feature_names if n.endswith("segment_ids"))
    pending: list[tuple[int, dict]] = []  # device metrics not yet fetched (fetching every step would stall the device)

    def flush(report: bool) -> None:
        """Fetch pending metrics (this waits for the device) and, if `report`, log the rates since the last reset."""
        for step, m in jax.device_get(pending):
            entry = {"step": step, **{k: float(v) for k, v in m.items()}}
            result.history.append(entry)
            record(entry)
        pending.clear()
        if report and result.history:
            rates = meter.rates()
            record({"step": result.history[-1]["step"], **rates})
            log(progress_line(result.history[-1]["step"], cfg.steps, result.history[-1], rates))

    start_time = time.perf_counter()
    for step in range(first, cfg.steps):
        local = batches.batch(step)
        state, metrics = s.step_fn(state, sharding.put_batch(local, s.mesh), s.root_key)
        pending.append((step + 1, metrics))
        meter.add(cfg.batch_size, real_tokens(local) * jax.process_count(), cfg.batch_size * slots_per_row)
        done = step + 1
        if step == first:  # the first step includes compilation: report it apart, then start the clock
            flush(False)
            first_metrics = result.history[-1]
            log(f"step {done}/{cfg.steps} | loss {first_metrics['loss']:.4f} (ce {first_metrics['cross_entropy']:.4f}) | "
                f"compile + first step {time.perf_counter() - start_time:.1f} s")
            meter.reset()
        elif done % cfg.log_every == 0 or done == cfg.steps:
            flush(True)
            meter.reset()
        if cfg.eval_holdout_every and ((cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps):
            flush(False)
            ev = {"step": done, **evaluate(s, state["params"], cfg)}
            result.evals.append(ev)
            record(ev)
            log(f"eval step {done}: loss {ev['eval_loss']:.4f} over {ev['eval_tokens']:,} held-out target tokens")
            meter.reset()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            checkpoints.save(done, state, meta)
            meter.reset()
        result.last_step = done
    flush(False)
    checkpoints.close()
    if metrics_file:
        metrics_file.close()
    if first >= cfg.steps:
        log(f"flanmix train: checkpoint is at step {first}, nothing to do for --steps {cfg.steps}")
    else:
        log(f"flanmix train: done, step {result.last_step}; checkpoints in {checkpoints.directory}")
    return result
