"""The device mesh and where parameters and batches live on it.

Mesh axes: "data" (batch rows are split over it) and "model" (the vocabulary, heads and MLP width are
split over it). On one CPU or one GPU both axes have size 1 and everything below is a no-op; on a
TPU slice `--model_parallelism 8` gives a (devices/8, 8) mesh. Parameters name logical axes
(see `trainer.model`); `LOGICAL_RULES` maps them to mesh axes, and XLA propagates the rest
(activations, Adafactor's factored statistics) from there.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from trainer.errors import ConfigError

LOGICAL_RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("heads", "model"),
    ("mlp", "model"),
    ("embed", None),
    ("kv", None),
    ("relpos_buckets", None),
)


def make_mesh(model_parallelism: int = 1, devices=None) -> Mesh:
    devices = list(devices if devices is not None else jax.devices())
    if model_parallelism < 1 or len(devices) % model_parallelism:
        raise ConfigError(f"model_parallelism {model_parallelism} does not divide the {len(devices)} available device(s)")
    shape = (len(devices) // model_parallelism, model_parallelism)
    # Auto axes: shardings are hints that XLA propagates (the default since JAX 0.9 is Explicit).
    return jax.make_mesh(shape, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def param_shardings(abstract_variables, mesh: Mesh):
    """NamedShardings for a tree of (boxed) abstract variables from `model.init` under `jax.eval_shape`."""
    return nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_variables), mesh, LOGICAL_RULES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    data = mesh.shape["data"]
    if batch_size % data:
        raise ConfigError(f"batch size {batch_size} is not a multiple of the mesh's data axis ({data} devices)")


def put_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's rows -> global arrays split over the data axis (one host: a plain device_put)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local_batch.items()}
