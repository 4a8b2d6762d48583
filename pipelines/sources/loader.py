"""Building from a snapshot: the `snapshot` loader and the plan hook that points every entry at it.

`plan_entry` (launcher, from `make_plan` when `BuildOptions.sources` is set) finds the entry in
sources.json and returns one SourceShard per snapshot file, with the index and planned size of the
shard it was fetched from, so the build reads in the same units and chooses the same number of
output shards as a build from the sources. The entry's loader, arguments, split and source split must
be those the snapshot recorded (else the snapshot is stale for it: re-run `sources snapshot`); its
files must be listed at their recorded sizes (one listing for the whole snapshot).

`SnapshotLoader.read` (workers) reads one file, checks its SHA-256 against sources.json before
decoding a byte (a tampered or damaged file fails the build naming the file) and yields the rows
exactly as the source's loader yielded them (`encoding`). Workers need nothing but the snapshot's
storage: no Hub, no TFDS, no source files.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterator, Mapping

from apache_beam.io.filesystems import FileSystems

from pipelines.errors import LoaderError
from pipelines.loaders.base import RawRow, SourceShard
from pipelines.sources import encoding
from pipelines.sources.manifest import Snapshot, SnapshotError, join, read_bytes

TYPE_NAME = "snapshot"


class SnapshotLoader:
    type_name = TYPE_NAME

    def plan(self, dataset: str, split: str, source_split: str, args: Mapping[str, Any]) -> list[SourceShard]:
        raise LoaderError(f"{dataset}: the snapshot loader is not named in catalog entries; build with "
                          f"--sources DIR to read every source from a snapshot")

    def count_rows(self, shard: SourceShard) -> int | None:
        """What the source's own loader's `count_rows` returned for this shard when the snapshot was
        made (the survey's fast path), or None when it has none: the survey then reads the rows, as
        it reads the source's."""
        return shard.args.get("_count_rows")

    def read(self, shard: SourceShard) -> Iterator[RawRow]:
        path, expected = shard.args["path"], shard.args["sha256"]
        try:
            data = read_bytes(path)
        except Exception as exc:  # noqa: BLE001 - scheme-specific errors for a missing object
            raise LoaderError(f"dataset {shard.dataset}: snapshot file {path} cannot be read: {exc}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise LoaderError(f"dataset {shard.dataset}: snapshot file {path} has sha256 {actual}, but sources.json "
                              f"records {expected}: the file was changed or damaged after the snapshot was made "
                              f"(`flanmix sources verify {shard.args['root']}`; re-run `flanmix sources snapshot`)")
        yield from encoding.decode_table(encoding.from_parquet_bytes(data))


def listing(snapshot: Snapshot) -> dict[str, int]:
    try:
        return {m.path: m.size_in_bytes for m in FileSystems.match([join(snapshot.root, "data", "**")])[0].metadata_list}
    except Exception:  # noqa: BLE001
        return {}


def plan_entry(snapshot: Snapshot, entry, split: str, present: Mapping[str, int]) -> list[SourceShard]:
    """The entry's SourceShards read from `snapshot`; LoaderError (the build skips the source, or
    fails under --strict) when the snapshot does not hold it as the catalog describes it now;
    SnapshotError (the build stops) when a file it lists is missing or of another size."""
    record = snapshot.sources.get(entry.name)
    where = f"snapshot {snapshot.root}"
    if record is None:
        raise LoaderError(f"dataset {entry.name}: {where} does not hold it (run `flanmix sources snapshot` for a "
                          f"mixture that uses it)")
    if record.get("status") != "ok":
        raise LoaderError(record.get("reason") or f"dataset {entry.name}: {where} could not fetch it")
    from pipelines.sources.snapshot import loader_identity

    now = {"loader": loader_identity(entry), "split": split,
           "source_split": entry.splits[split]}
    for key, value in now.items():
        if record.get(key) != value:
            raise LoaderError(f"dataset {entry.name}: {where} was made with {key} {record.get(key)!r}, the catalog "
                              f"now says {value!r}; re-run `flanmix sources snapshot` to refresh it")
    shards = []
    for s in record["shards"]:
        path = join(snapshot.root, s["path"])
        if present.get(path) != s["num_bytes"]:
            found = "is missing" if path not in present else f"has {present[path]} bytes, sources.json records {s['num_bytes']}"
            raise SnapshotError(f"dataset {entry.name}: snapshot file {path} {found}; run `flanmix sources verify {snapshot.root}`")
        args = {"path": path, "sha256": s["sha256"], "root": snapshot.root}
        if s.get("planned_rows") is not None:  # the source loader's estimate: shard_count plans as from the source
            args["_rows"] = s["planned_rows"]
        if s.get("count_rows") is not None:
            args["_count_rows"] = s["count_rows"]
        shards.append(SourceShard(entry.name, split, TYPE_NAME, args, s["index"], s["source_bytes"]))
    return shards
