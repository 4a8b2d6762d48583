"""Hugging Face `datasets`: Hub datasets, packaged builders (parquet/json/csv) and `save_to_disk` folders.

Arguments (`loader.args`):
  dataset        Hub id or packaged builder, e.g. `bigscience/P3`, `parquet` (passed to load_dataset)
  name           config name;  revision: git revision of the Hub repo;  data_files / data_dir
  streaming      true: read with `streaming=True`, one shard per source file (for very large sets)
  path           a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`; read with
                 `load_from_disk` instead of `load_dataset` (the way to provide Hub data offline)
  rows_per_shard rows per parallel read unit (default 100000)

$FLANMIX_HF_ROOT (a local folder, gs:// or s3://): where an entry without `path` finds a
`save_to_disk` copy of its Hub dataset, `$FLANMIX_HF_ROOT/<dataset>/<name or "default">` (e.g.
`gs://B/hf/bigscience/P3/cos_e_v1.11_i_think`); used when that folder exists, so a whole mixture of
Hub datasets reads from a bucket without editing its entries (`saved_copy`).

Read units open only what they read (`arrow_units`): a `save_to_disk` folder (local, gs:// or s3://)
and the `parquet` / `arrow` builders with `data_files` are planned from the files' own metadata
(state.json, Arrow message headers, Parquet footers) without loading the dataset, and each unit reads
one file's record batches / row groups, once, through Beam FileSystems (range reads; nothing is
copied to local disk). Hub ids, the json/csv/text builders, `streaming` and datasets whose features
need decoding (Image, Audio, ...) go through `datasets` itself; to read a Hub dataset at scale, copy
its Parquet files (the Hub's `refs/convert/parquet` branch) to a bucket and use `dataset: parquet`.

Row ids are `<split>:<index in the whole source split>` (streaming: `<split>:<shard>:<index>`), so a
slice such as `train[:-200]` keeps each row's id.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping

from pipelines.errors import LoaderError
from pipelines.loaders import arrow_units, files
from pipelines.loaders.base import RawRow, SourceShard
from pipelines.loaders.splits import chunks, parse_split

ROWS_PER_SHARD = 100_000
_PACKAGED = {"parquet", "json", "csv", "arrow", "text"}
_BY_RANGE = {"parquet": "parquet", "arrow": "arrow"}  # packaged builders read by file range (arrow_units)
_DECODED = {"Image", "Audio", "Video", "Pdf", "Nifti"}  # feature types `datasets` decodes on access


def is_saved_dir(path: str) -> bool:
    if not files.is_local(path):
        return any(files.exists(f"{path.rstrip('/')}/{f}") for f in ("dataset_dict.json", "state.json"))
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json")
    )


HF_ROOT_ENV = "FLANMIX_HF_ROOT"


def saved_copy(args: Mapping[str, Any]) -> Mapping[str, Any]:
    """`args` with `path` set to the entry's copy under $FLANMIX_HF_ROOT when it has none and the
    copy exists (resolved on the launcher: the units carry the path, workers need no variable)."""
    root = os.environ.get(HF_ROOT_ENV)
    if args.get("path") or not root or not args.get("dataset") or args.get("dataset") in _PACKAGED:
        return args
    candidate = f"{root.rstrip('/')}/{args['dataset']}/{args.get('name') or 'default'}"
    return {**args, "path": candidate} if is_saved_dir(candidate) else args


class _NotByRange(Exception):
    """The source needs `datasets` itself (decoded features, dictionary-encoded Arrow)."""


def _read_json(path: str) -> Any:
    return json.loads(files.read_bytes(path).decode("utf-8"))


def _needs_decoding(features: Any) -> bool:
    if isinstance(features, Mapping):
        return features.get("_type") in _DECODED or any(_needs_decoding(v) for v in features.values())
    if isinstance(features, list):
        return any(_needs_decoding(v) for v in features)
    return False


def _saved_split(path: str, split: str) -> tuple[list[str], list[str] | None]:
    """(Arrow files in order, format columns or None) of one split of a save_to_disk folder, from
    its JSON files only."""
    root = path.rstrip("/")
    folder = root
    if files.exists(f"{root}/dataset_dict.json"):
        splits = list(_read_json(f"{root}/dataset_dict.json").get("splits", []))
        if split not in splits:
            raise KeyError(f"no split {split!r} in {path} (has {sorted(splits)})")
        folder = f"{root}/{split}"
    state = _read_json(f"{folder}/state.json")
    info_path = f"{folder}/dataset_info.json"
    if files.exists(info_path) and _needs_decoding(_read_json(info_path).get("features")):
        raise _NotByRange
    if state.get("_indices_data_files") or state.get("_format_type") not in (None, "python"):
        raise _NotByRange  # an indices mapping, or numpy/torch formatting: let datasets apply it
    return [f"{folder}/{f['filename']}" for f in state["_data_files"]], state.get("_format_columns")


def _builder_files(args: Mapping[str, Any], split: str) -> list[str]:
    """The data files of a packaged builder's split in datasets' order: patterns as given, each
    pattern's matches sorted by path."""
    data_files = args["data_files"]
    if isinstance(data_files, Mapping):
        if split not in data_files:
            raise KeyError(f"no split {split!r} in data_files (has {sorted(data_files)})")
        patterns = data_files[split]
    elif split == "train":
        patterns = data_files
    else:
        raise KeyError(f"data_files without split names is the split 'train', not {split!r}")
    patterns = patterns if isinstance(patterns, list) else [patterns]
    if args.get("data_dir"):
        patterns = [p if "://" in p or p.startswith("/") else f"{str(args['data_dir']).rstrip('/')}/{p}" for p in patterns]
    return [p for pattern in patterns for p, _ in files.expand(str(pattern), f"data_files {pattern}")]


def _parquet_decodes(path: str) -> bool:
    """Whether a Parquet file written by `datasets` declares features it decodes (Image, Audio)."""
    import pyarrow.parquet as pq

    with files.open_binary(path) as handle:
        meta = pq.ParquetFile(handle).schema_arrow.metadata or {}
    info = meta.get(b"huggingface")
    return bool(info) and _needs_decoding(json.loads(info).get("info", {}).get("features"))


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
        ".save_to_disk('DIR')\"`, copy DIR here and set loader.args.path: DIR in the catalog entry (or save it as "
        f"$FLANMIX_HF_ROOT/{args.get('dataset')}/{args.get('name') or 'default'}); or copy a "
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

    def _range_units(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard] | None:
        """Units planned from file metadata, or None when this source goes through `datasets`."""
        sel = parse_split(source_split)
        if args.get("path"):
            if not is_saved_dir(str(args["path"])):
                return None  # _load says what is wrong
            try:
                paths, columns = _saved_split(str(args["path"]), sel.name)
                kinds = ["arrow"] * len(paths)
            except _NotByRange:
                return None
            except (KeyError, ValueError, OSError, LoaderError) as exc:
                raise LoaderError(f"dataset {dataset} (hf_datasets): {args['path']}: {exc}") from None
        elif args.get("dataset") in _BY_RANGE and args.get("data_files") and not args.get("streaming"):
            kind = _BY_RANGE[args["dataset"]]
            try:
                paths = _builder_files(args, sel.name)
            except (KeyError, LoaderError) as exc:
                raise LoaderError(files.with_hint(f"dataset {dataset} (hf_datasets): {exc}", args)) from None
            if kind == "parquet" and paths and _parquet_decodes(paths[0]):
                return None
            kinds, columns = [kind] * len(paths), None
        else:
            return None
        pieces, first = [], 0
        try:
            for path, kind in zip(paths, kinds):
                pieces.extend(arrow_units.file_pieces(path, kind, first))
                first = pieces[-1].first_row + pieces[-1].rows if pieces else first
        except LoaderError as exc:
            if "dictionary-encoded" in str(exc):
                return None
            raise LoaderError(f"dataset {dataset} (hf_datasets): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid & co. for a bad footer
            raise LoaderError(f"dataset {dataset} (hf_datasets): could not read the metadata of {path}: "
                              f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]) from None
        start, stop = sel.resolve(first)
        size = int(args.get("rows_per_shard") or ROWS_PER_SHARD)
        base = {**args, "_split": sel.name}
        if columns is not None:
            base["_columns"] = list(columns)
        units = arrow_units.group_pieces(pieces, start, stop, size)
        if not units:  # an empty selection still plans one unit, which reads nothing
            units = [{"_file": None, "_first_row": start, "_keep": [start, start], "_rows": 0, "_bytes": 0}]
        return [SourceShard(dataset, split, self.type_name, {**base, **u}, i, u["_bytes"]) for i, u in enumerate(units)]

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        if not args.get("path") and not args.get("dataset"):
            raise LoaderError(f"{dataset}: the hf_datasets loader needs loader.args.dataset (a Hub id) or .path")
        args = saved_copy(args)
        units = self._range_units(dataset, split, source_split, args)
        if units is not None:
            return units
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
        args = saved_copy(args)
        if args.get("path"):
            return is_saved_dir(str(args["path"]))
        data_files = args.get("data_files")
        if args.get("dataset") in _PACKAGED and data_files:
            values = data_files.values() if isinstance(data_files, Mapping) else [data_files]
            flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
            return all(files.is_local(str(v)) for v in flat)
        return False

    def count_rows(self, shard: SourceShard) -> int:
        """The rows `read` yields (none has an error), from the plan's metadata where it has them."""
        args = shard.args
        if "_keep" in args:
            return args["_keep"][1] - args["_keep"][0]
        if "_range" in args:
            return max(0, args["_range"][1] - args["_range"][0])
        return sum(1 for _ in self.read(shard))

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        args, split = shard.args, shard.args["_split"]
        if "_keep" in args:
            if args["_file"] is None:
                return
            try:
                for index, fields in arrow_units.iter_unit_rows(args):
                    yield RawRow(f"{split}:{index}", fields)
            except LoaderError as exc:
                raise LoaderError(f"dataset {shard.dataset} (hf_datasets): {args['_file'][0]}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - pyarrow's errors (a truncated or rewritten file)
                raise LoaderError(f"dataset {shard.dataset} (hf_datasets): reading {args['_file'][0]} failed: "
                                  f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]) from None
            return
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
