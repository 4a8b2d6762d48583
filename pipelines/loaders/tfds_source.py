"""TensorFlow Datasets: reads a prepared TFDS dataset (`<data_dir>/<name>/<config>/<version>/`).

Arguments (`loader.args`):
  name      `glue/mrpc:2.0.0` (name[/config][:version]; without a version the newest prepared one)
  data_dir  where prepared datasets live (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets);
            local, gs:// or s3://
  try_gcs   true: when not prepared locally, read TFDS's public prepared copy (gs://tfds-data)
  download  true: when not prepared, run `download_and_prepare` on the launcher (needs internet)
  rows_per_shard  rows per parallel read unit (default 100000)

Prepared data is opened with `tfds.builder_from_directory`, so a dataset needs no builder code to be
read, and examples are read in file order (interleave cycle 1): row ids are `<split>:<index>`, the
example's index in the whole source split, also when an entry takes a slice (`train[:-200]`).
Features come back as plain Python: text as str, sequences as lists, nested features as dicts.
"""
from __future__ import annotations

import os
import posixpath
from typing import Any, Iterator, Mapping

import numpy as np

from pipelines.errors import LoaderError
from pipelines.loaders import files
from pipelines.loaders.base import RawRow, SourceShard
from pipelines.loaders.splits import chunks, parse_split

ROWS_PER_SHARD = 100_000


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as exc:  # pragma: no cover - installed with the project
        raise LoaderError(f"the tfds loader needs tensorflow-datasets (pip install tensorflow-datasets): {exc}") from None
    return tfds


def default_data_dir(args: Mapping[str, Any]) -> str:
    return str(args.get("data_dir") or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets"))


def split_name(name: str) -> tuple[str, str | None]:
    """'glue/mrpc:2.0.0' -> ('glue/mrpc', '2.0.0')."""
    base, _, version = name.partition(":")
    return base.strip(), (version.strip() or None)


def prepared_dir(args: Mapping[str, Any]) -> str | None:
    """The prepared dataset folder for `args`, or None if it does not exist."""
    base, version = split_name(str(args.get("name", "")))
    root = posixpath.join(default_data_dir(args), base)
    if version is None:
        try:
            from apache_beam.io.filesystems import FileSystems

            found = [m.path for m in FileSystems.match([posixpath.join(root, "*", "dataset_info.json")])[0].metadata_list]
        except Exception:  # noqa: BLE001 - an unreadable root means nothing prepared there
            return None
        versions = sorted((posixpath.basename(posixpath.dirname(p)) for p in found),
                          key=lambda v: tuple(int(x) if x.isdigit() else 0 for x in v.split(".")))
        if not versions:
            return None
        version = versions[-1]
    path = posixpath.join(root, version)
    return path if files.exists(posixpath.join(path, "dataset_info.json")) else None


def to_python(value: Any) -> Any:
    """numpy / bytes values from `tfds.as_numpy` as plain Python values."""
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()] if value.ndim else to_python(value.item())
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, np.generic):
        return to_python(value.item())
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def _how_to_provide(name: str, data_dir: str) -> str:
    return (
        f"To provide it: on a machine with internet access run `tfds build {name} --data_dir DIR` (or "
        f"tfds.builder('{name}', data_dir='DIR').download_and_prepare(); some datasets need a manual download "
        f"first, see their TFDS catalog page), copy DIR/{split_name(name)[0]}/ to {data_dir} or set "
        f"loader.args.data_dir / $TFDS_DATA_DIR to DIR; or set loader.args.try_gcs: true to read TFDS's public "
        f"prepared copy from gs://tfds-data."
    )


class TfdsLoader:
    type_name = "tfds"

    def _builder(self, dataset: str, args: Mapping[str, Any]):
        name = str(args.get("name") or "")
        if not name:
            raise LoaderError(f"{dataset}: the tfds loader needs loader.args.name, e.g. glue/mrpc:2.0.0")
        tfds = _tfds()
        data_dir = default_data_dir(args)
        path = prepared_dir(args)
        tried = [f"{posixpath.join(data_dir, split_name(name)[0])} (no prepared copy)"]
        try:
            if path is not None:
                return tfds.builder_from_directory(path), path
            if args.get("try_gcs"):
                tried.append("gs://tfds-data (try_gcs)")
                builder = tfds.builder(name, try_gcs=True)
                return builder, builder.data_dir
            if args.get("download"):
                tried.append(f"download_and_prepare into {data_dir}")
                builder = tfds.builder(name, data_dir=data_dir)
                builder.download_and_prepare()
                return builder, builder.data_dir
        except LoaderError:
            raise
        except Exception as exc:  # noqa: BLE001 - tfds raises many types (network, manual download, ...)
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400]
            raise LoaderError(files.with_hint(
                f"dataset {dataset} (tfds {name}): tried {'; '.join(tried)} and failed: {detail}. {_how_to_provide(name, data_dir)}",
                args)) from None
        raise LoaderError(files.with_hint(
            f"dataset {dataset} (tfds {name}): tried {'; '.join(tried)}. {_how_to_provide(name, data_dir)}", args))

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        sel = parse_split(source_split)
        builder, path = self._builder(dataset, args)
        splits = builder.info.splits
        if sel.name not in splits:
            raise LoaderError(f"dataset {dataset} (tfds {args['name']}): no split {sel.name!r} (has {sorted(splits)})")
        info = splits[sel.name]
        start, stop = sel.resolve(info.num_examples)
        per_row = (info.num_bytes or 0) / max(1, info.num_examples)
        size = int(args.get("rows_per_shard") or ROWS_PER_SHARD)
        base = {**args, "_builder_dir": path, "_split": sel.name}
        return [
            SourceShard(dataset, split, self.type_name, {**base, "_range": [lo, hi]}, i, int(per_row * (hi - lo)))
            for i, (lo, hi) in enumerate(chunks(start, stop, size))
        ]

    def offline_ready(self, args: Mapping[str, Any], source_split: str = "train") -> bool:
        return files.is_local(default_data_dir(args)) and prepared_dir(args) is not None

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        tfds = _tfds()
        lo, hi = shard.args["_range"]
        if hi <= lo:
            return
        builder = tfds.builder_from_directory(shard.args["_builder_dir"])
        name = shard.args["_split"]
        ds = builder.as_dataset(
            split=f"{name}[{lo}:{hi}]", shuffle_files=False,
            read_config=tfds.ReadConfig(interleave_cycle_length=1, try_autocache=False),
        )
        for offset, example in enumerate(tfds.as_numpy(ds)):
            yield RawRow(f"{name}:{lo + offset}", to_python(example))
