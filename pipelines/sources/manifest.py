"""sources.json: what a snapshot holds, written last (its presence means the snapshot is complete).

    {"snapshot_version": 1, "flanmix_version": ..., "mixtures": [...],
     "sources": {DATASET: {
         "status": "ok" | "failed", "reason": why it could not be fetched (failed only),
         "key": sha256 of (loader type, loader args, source split, SHA-256 of its local source files),
         "loader": {"type": ..., "args": {...}}, "split": "train", "source_split": "train[:-200]",
         "fields": the catalog's declared fields, "library_versions": {...},
         "source_files": {local source file: sha256},
         "rows": {split: rows}, "dead_letters": {split: rows the loader could not parse},
         "shards": [{"path", "index", "num_rows", "num_bytes", "sha256", "source_bytes", "planned_rows",
                     "count_rows"}, ...]}}}

`path` is relative to the snapshot root; one shard per `SourceShard` the loader planned (same index,
the planned `size_bytes` as `source_bytes`, the rows the launcher estimates for it as `planned_rows`
(`planning.shard_count.planned_rows`) and what the loader's `count_rows` said, or null), so a build
from the snapshot reads in the same units, picks the same number of output (and dead-letter) shards
and surveys the same counts as a build from the sources. No timestamps: the same
sources give the same bytes, and the SHA-256 of these bytes is the snapshot's hash (a build
records it in its manifest as `sources_snapshot.sha256`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import FlanmixError

SOURCES_NAME = "sources.json"
SNAPSHOT_VERSION = 1


class SnapshotError(FlanmixError):
    """A snapshot is missing, incomplete, damaged or does not hold what a build needs."""


@dataclass(frozen=True)
class Snapshot:
    root: str
    sha256: str
    data: Mapping[str, Any]

    @property
    def sources(self) -> Mapping[str, Any]:
        return self.data.get("sources", {})


def join(root: str, *parts: str) -> str:
    return FileSystems.join(root.rstrip("/") or "/", *parts)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def dumps(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def load(root: str, required: bool = True) -> Snapshot | None:
    """The snapshot at `root` (local, gs://, s3://); SnapshotError if there is none and `required`."""
    path = join(root, SOURCES_NAME)
    try:
        exists = FileSystems.exists(path)
    except Exception as exc:  # noqa: BLE001 - an unreachable bucket
        raise SnapshotError(f"snapshot {root}: cannot reach {path}: {exc}") from None
    if not exists:
        if not required:
            return None
        raise SnapshotError(f"{root} holds no source snapshot ({SOURCES_NAME} is missing; a snapshot that is still "
                            f"being written has none yet). Make one with `flanmix sources snapshot --mixture NAME --to {root}`")
    data = read_bytes(path)
    try:
        parsed = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise SnapshotError(f"{path} is not valid JSON: {exc}") from None
    if parsed.get("snapshot_version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"{path}: snapshot_version {parsed.get('snapshot_version')!r}, this flanmix reads {SNAPSHOT_VERSION}")
    return Snapshot(root, hashlib.sha256(data).hexdigest(), parsed)
