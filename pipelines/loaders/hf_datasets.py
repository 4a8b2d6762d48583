"""Hugging Face `datasets`: Hub datasets, packaged builders (parquet/json/csv) and `save_to_disk` folders.

Arguments (`loader.args`):
  dataset        Hub id or packaged builder, e.g. `bigscience/P3`, `parquet` (passed to load_dataset)
  name           config name;  revision: git revision of the Hub repo;  data_files / data_dir
  streaming      true: read with `streaming=True`, one shard per source file (for very large sets)
  path           a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`; read with
                 `load_from_disk` instead of `load_dataset` (the way to provide Hub data offline)
  rows_per_shard rows per parallel read unit (default 100000)

Row ids are `<split>:<index in the whole source split>` (streaming: `<split>:<shard>:<index>`), so a
slice such as `train[:-200]` keeps each row's id.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import files
from pipelines.loaders.base import RawRow, SourceShard
from pipelines.loaders.splits import chunks, parse_split

ROWS_PER_SHARD = 100_000
_PACKAGED = {"parquet", "json", "csv", "arrow", "text"}


def is_saved_dir(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json")
    )


def _call_text(args: Mapping[str, Any], split: str, streaming: bool) -> str:
    if args.get("path"):
        return f"datasets.load_from_disk({args['path']!r})[{split!r}]"
    kw = [repr(args.get("dataset"))] + [f"{k}={args[k]!r}" for k in ("name", "revision", "data_files", "data_dir") if args.get(k)]
    kw.append(f"split={split!r}")
    if streaming:
        kw.append("streaming=True")
    return f"datasets.load_dataset({', '.join(kw)})"


def _how_to_provide(args: Mapping[str, Any], split: str) -> str:
    if args.get("path"):
        return f"Check that {args['path']} is a folder written by save_to_disk."
    cfg = f", {args['name']!r}" if args.get("name") else ""
    return (
        "To provide the data locally: on a machine with internet access run "
        f"`python -c \"import datasets; datasets.load_dataset({args.get('dataset')!r}{cfg}, split={split!r})"
        ".save_to_disk('DIR')\"`, copy DIR here and set loader.args.path: DIR in the catalog entry; or copy a "
        "populated Hugging Face cache and set HF_HOME (with HF_DATASETS_OFFLINE=1)."
    )


def _open(args: Mapping[str, Any], split: str, streaming: bool):
    import datasets

    if args.get("path"):
        loaded = datasets.load_from_disk(args["path"])
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise KeyError(f"no split {split!r} in {args['path']} (has {sorted(loaded)})")
            return loaded[split]
        return loaded
    kwargs = {k: args[k] for k in ("name", "revision", "data_files", "data_dir") if args.get(k)}
    return datasets.load_dataset(args["dataset"], split=split, streaming=streaming, **kwargs)


def _plain(value: Any) -> Any:
    """Arrow-backed values are already Python; numpy values (custom formats) are converted."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class HfDatasetsLoader:
    type_name = "hf_datasets"

    def _load(self, dataset: str, args: Mapping[str, Any], split: str, streaming: bool):
        if not args.get("path") and not args.get("dataset"):
            raise LoaderError(f"{dataset}: the hf_datasets loader needs loader.args.dataset (a Hub id) or .path")
        hub_needed = not args.get("path") and not self.offline_ready(args, split)
        if hub_needed and os.environ.get("HF_HUB_OFFLINE") != "1" and (why := files.unreachable("huggingface.co")):
            raise LoaderError(files.with_hint(
                f"dataset {dataset} (hf_datasets): {_call_text(args, split, streaming)} needs the Hugging Face Hub, but {why}. "
                f"{_how_to_provide(args, split)}", args))
        try:
            return _open(args, split, streaming)
        except Exception as exc:  # noqa: BLE001 - datasets raises many types (network, missing config, ...)
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
            raise LoaderError(files.with_hint(
                f"dataset {dataset} (hf_datasets): tried {_call_text(args, split, streaming)} and it failed: {message}. "
                f"{_how_to_provide(args, split)}", args)) from None

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        sel = parse_split(source_split)
        streaming = bool(args.get("streaming")) and not args.get("path")
        ds = self._load(dataset, args, sel.name, streaming)
        base = {**args, "_split": sel.name}
        if streaming:
            if not sel.is_full:
                raise LoaderError(f"{dataset}: streaming reads whole splits; {source_split!r} slices one (drop `streaming`)")
            n = max(1, int(getattr(ds, "num_shards", 1) or 1))
            return [SourceShard(dataset, split, self.type_name, {**base, "_shard": i, "_num_shards": n}, i, 0) for i in range(n)]
        start, stop = sel.resolve(len(ds))
        total_bytes = int(getattr(ds.data, "nbytes", 0) or 0)
        per_row = total_bytes / max(1, len(ds))
        size = int(args.get("rows_per_shard") or ROWS_PER_SHARD)
        return [
            SourceShard(dataset, split, self.type_name, {**base, "_range": [lo, hi]}, i, int(per_row * (hi - lo)))
            for i, (lo, hi) in enumerate(chunks(start, stop, size))
        ]

    def offline_ready(self, args: Mapping[str, Any], source_split: str = "train") -> bool:
        if args.get("path"):
            return is_saved_dir(str(args["path"]))
        data_files = args.get("data_files")
        if args.get("dataset") in _PACKAGED and data_files:
            values = data_files.values() if isinstance(data_files, Mapping) else [data_files]
            flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
            return all(files.is_local(str(v)) for v in flat)
        return False

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        args, split = shard.args, shard.args["_split"]
        if "_shard" in args:
            stream = self._load(shard.dataset, args, split, True).shard(num_shards=args["_num_shards"], index=args["_shard"])
            for index, fields in enumerate(stream):
                yield RawRow(f"{split}:{args['_shard']}:{index}", {k: _plain(v) for k, v in fields.items()})
            return
        lo, hi = args["_range"]
        if hi <= lo:
            return
        ds = self._load(shard.dataset, args, split, False).select(range(lo, hi))
        index = lo
        for batch in ds.iter(batch_size=1024):
            keys = list(batch)
            for values in zip(*(batch[k] for k in keys)):
                fields = {k: _plain(v) for k, v in zip(keys, values)}
                yield RawRow(f"{split}:{index}", fields)
                index += 1
