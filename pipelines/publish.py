"""Atomic publishing: a reader that finds `manifest.json` finds a complete, verified corpus.

    OUTPUT/.staging-<run id>/tfrecord/...   1. the job writes every shard and dead-letter file here
                                               (and Pack's spilled runs, under _runs/)
                                            2. VerifyStaged re-reads each one: size, SHA-256 and row
                                               count must equal what the writer reported
    OUTPUT/tfrecord/... parquet/... dead_letter/...
                                            3. Commit moves them to their final names (an old manifest
                                               is deleted first when overwriting)
    OUTPUT/README.md, card/*.png            (the data card, rendered from the manifest, staged and
                                               verified the same way and moved with them: pipelines/card.py)
    OUTPUT/manifest.json                    4. the manifest goes last, then the staging prefix is removed

Works on every Beam filesystem (local, gs://, s3://): on object stores an object appears whole or not
at all, locally a file is renamed into place. A run that dies at any point leaves no new manifest; its
staging prefix (named from the plan's hash, so the same build re-run reuses it) is overwritten by the
next attempt; a successful publish removes every staging prefix under OUTPUT. The run id is a pure
function of the plan, never of time or workers.

Destinations: `resolve_output(OUTPUT, mixture, versioned=False)` is OUTPUT itself; with
`versioned=True` it is `OUTPUT/MIXTURE/vN`, N one more than the newest complete version (a version
directory without a manifest, left by a run that died, is reused).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zlib
from typing import Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import card
from pipelines import manifest as manifest_lib
from pipelines.errors import FlanmixError
from pipelines.writers import WrittenFile

STAGING_PREFIX = ".staging-"
CHUNK = 8 * 1024 * 1024
SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<suffix>\..*)?$")


class PublishError(FlanmixError):
    """The output exists and may not be replaced, or staged files do not match what was written."""


# --- where -----------------------------------------------------------------------------------------

def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base.rstrip("/") or "/", *parts)


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def manifest_path(output_dir: str) -> str:
    return _join(output_dir, manifest_lib.MANIFEST_NAME)


def _canonical(value):
    """A JSON-able, order-independent view of a plan (dataclasses, mappings, sets, tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def run_id(plan) -> str:
    """12 hex digits of the SHA-256 of the plan: the same build gets the same staging prefix."""
    text = json.dumps(_canonical(plan), sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def staging_dir(output_dir: str, plan) -> str:
    return _join(output_dir, STAGING_PREFIX + run_id(plan))


def complete_versions(base: str) -> list[int]:
    """N of every `base/vN/` that holds a manifest, ascending (storage errors propagate: guessing v1
    for an unreachable bucket would be wrong)."""
    found = FileSystems.match([_join(base, "v*", manifest_lib.MANIFEST_NAME)])[0].metadata_list
    versions = set()
    for meta in found:
        match = re.search(r"/v(\d+)/" + re.escape(manifest_lib.MANIFEST_NAME) + "$", meta.path)
        if match:
            versions.add(int(match.group(1)))
    return sorted(versions)


def resolve_output(output: str, mixture: str, versioned: bool = False) -> str:
    """OUTPUT, or OUTPUT/MIXTURE/vN for a versioned build (see the module docstring)."""
    if not versioned:
        return output
    base = _join(output, mixture)
    return _join(base, f"v{max(complete_versions(base), default=0) + 1}")


def check_destination(output_dir: str, overwrite: bool) -> None:
    """Refuse to build into a complete corpus unless `overwrite`."""
    if not overwrite and _exists(manifest_path(output_dir)):
        raise PublishError(
            f"{output_dir} already holds a complete corpus ({manifest_lib.MANIFEST_NAME}); pass --overwrite "
            f"to replace it, --versioned to publish a new version next to it, or choose another --output"
        )


# --- verify ----------------------------------------------------------------------------------------

class _TFRecordFrames:
    """Counts TFRecord frames (8-byte length, 4-byte CRC, data, 4-byte CRC) in a byte stream."""

    def __init__(self):
        self.count, self._skip, self._header = 0, 0, b""

    def feed(self, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            need = 12 - len(self._header)
            self._header += data[pos:pos + need]
            pos += min(need, n - pos)
            if len(self._header) == 12:
                length = int.from_bytes(self._header[:8], "little")
                self._skip, self._header = length + 4, b""
                self.count += 1

    def complete(self) -> bool:
        return self._skip == 0 and not self._header


class _Lines:
    def __init__(self):
        self.count = 0

    def feed(self, data: bytes) -> None:
        self.count += data.count(b"\n")

    def complete(self) -> bool:
        return True


class _ParquetFooter:
    """Keeps the end of a Parquet byte stream and reads the row count from its footer."""

    KEEP = 4 * 1024 * 1024

    def __init__(self):
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-self.KEEP:]

    def complete(self) -> bool:
        return self._tail.endswith(b"PAR1") and len(self._tail) >= 8 + self._footer_length()

    def _footer_length(self) -> int:
        return int.from_bytes(self._tail[-8:-4], "little") if len(self._tail) >= 8 else 1 << 62

    @property
    def count(self) -> int:
        import io

        import pyarrow.parquet as pq

        footer = self._tail[-(self._footer_length() + 8):]
        return pq.read_metadata(io.BytesIO(b"PAR1" + footer)).num_rows


def _row_counter(path: str):
    """A streaming row counter for the file's format (TFRecord, Parquet, JSONL; .gz allowed), or None."""
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith(".tfrecord"):
        return _TFRecordFrames()
    if name.endswith(".jsonl"):
        return _Lines()
    if name.endswith(".parquet") and not path.endswith(".gz"):
        return _ParquetFooter()
    return None


def verify_file(staging: str, written: WrittenFile) -> WrittenFile:
    """Re-read one staged file (one pass): its size and SHA-256 must equal what the writer reported,
    and so must its row count where the format can be counted (TFRecord frames, Parquet footer, JSONL
    lines)."""
    path = _join(staging, written.path)
    digest, size = hashlib.sha256(), 0
    counter = _row_counter(path)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if path.endswith(".gz") else None
    try:
        handle = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as exc:  # noqa: BLE001 - Beam raises scheme-specific errors for a missing object
        raise PublishError(f"staged file {path} is missing or unreadable: {exc}") from None
    with handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if counter is not None:
                counter.feed(inflate.decompress(chunk) if inflate else chunk)
    if size != written.num_bytes or digest.hexdigest() != written.sha256:
        raise PublishError(
            f"staged file {path}: {size} bytes, sha256 {digest.hexdigest()}; the writer reported "
            f"{written.num_bytes} bytes, sha256 {written.sha256}"
        )
    if counter is not None:
        if not counter.complete():
            raise PublishError(f"staged file {path}: truncated (its last record or footer is incomplete)")
        if counter.count != written.num_rows:
            raise PublishError(f"staged file {path} holds {counter.count} rows; the writer reported {written.num_rows}")
    return written


def check_complete(files: Iterable[WrittenFile]) -> None:
    """Every `NAME-SSSSS-of-NNNNN.EXT` series has all N members."""
    series: dict[tuple, set] = {}
    for f in files:
        directory, _, name = f.path.rpartition("/")
        m = SHARD_RE.match(name)
        if m:
            key = (directory, m["stem"], m["suffix"] or "", int(m["count"]))
            series.setdefault(key, set()).add(int(m["index"]))
    for (directory, stem, suffix, count), seen in sorted(series.items()):
        missing = sorted(set(range(count)) - seen)
        if missing:
            raise PublishError(f"{directory}/{stem}-*-of-{count:05d}{suffix}: shard(s) {missing} were not written")


# --- commit ----------------------------------------------------------------------------------------

def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def _listing(prefix: str) -> set[str]:
    """Every file under a directory / object prefix, in one listing."""
    try:
        return {m.path for m in FileSystems.match([_join(prefix, "**")])[0].metadata_list}
    except Exception:  # noqa: BLE001 - a prefix that does not exist holds nothing
        return set()


def _move_all(sources: list[str], destinations: list[str]) -> None:
    for destination in destinations:
        if "://" not in destination:
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    if sources:
        _move(sources, destinations)


def _move(sources: list[str], destinations: list[str]) -> None:
    FileSystems.rename(sources, destinations)


def _delete(paths: list[str]) -> None:
    existing = [p for p in paths if _exists(p)]
    if existing:
        FileSystems.delete(existing)


def _delete_staging(output_dir: str) -> None:
    """Remove every staging prefix under `output_dir`: this build's, and any left by builds that died
    (with another plan, hence another run id). Best effort: the corpus is already published."""
    try:
        if "://" in output_dir:
            pattern = _join(output_dir, STAGING_PREFIX + "*", "**")
            leftovers = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
            if leftovers:
                FileSystems.delete(leftovers)
        elif os.path.isdir(output_dir):
            stale = [e.path for e in os.scandir(output_dir) if e.name.startswith(STAGING_PREFIX) and e.is_dir()]
            if stale:
                FileSystems.delete(stale)
    except Exception:  # noqa: BLE001
        pass


def commit(report, verified: int, plan, output_dir: str, staging: str, overwrite: bool, table=None) -> dict:
    """Move the verified staged files to their final names and write manifest.json last.

    Idempotent, so a runner may retry it: files already moved are recognised, and a manifest already
    in place with the same bytes means a previous attempt finished."""
    files = tuple(report.files)
    if verified != len(files):
        raise PublishError(f"{verified} of {len(files)} staged files were verified; not publishing")
    check_complete(files)
    final_manifest = manifest_path(output_dir)
    staged_manifest = _join(staging, manifest_lib.MANIFEST_NAME)
    manifest = manifest_lib.write_manifest(report, plan, staging, table) if table is not None else \
        manifest_lib.write_manifest(report, plan, staging)
    data = _read(staged_manifest)
    card_files = card.stage_card(manifest, staging, verify_file)  # README.md + card/*.png, verified

    old_files: list[str] = []
    if _exists(final_manifest):
        if _read(final_manifest) == data:  # a previous attempt of this commit got this far
            card.restore_card(card_files, staging, output_dir)
            _delete_staging(output_dir)
            return manifest
        if not overwrite:
            raise PublishError(f"{output_dir} received a manifest while this build ran; not replacing it (--overwrite)")
        try:
            old = json.loads(_read(final_manifest).decode("utf-8"))
            old_files = [f["path"] for f in old.get("files", [])] + list(old.get("dead_letter", {}).get("files", []))
        except ValueError:
            old_files = []
        _delete([final_manifest])  # from here on no reader sees the old corpus as complete

    staged = _listing(staging)
    moves = [(_join(staging, f.path), _join(output_dir, f.path)) for f in files + card_files]
    for source, destination in moves:  # a retried commit finds some files already moved
        if source not in staged and not _exists(destination):
            raise PublishError(f"{destination}: neither the staged copy nor a published copy exists")
    todo = [(s, d) for s, d in moves if s in staged]
    _move_all([s for s, _ in todo], [d for _, d in todo])
    new_paths = {f.path for f in files}
    _delete([_join(output_dir, p) for p in old_files + card.stale_plots(card_files) if p not in new_paths])
    _move_all([staged_manifest], [final_manifest])
    _delete_staging(output_dir)
    return manifest


class Publish(beam.PTransform):
    """merged Report -> verify every staged file -> commit (moves, then manifest.json).

    `table` (optional) is a PCollection passed to `manifest.write_manifest` as a side input.
    `verify_in_parallel` spreads the files over the workers (a reshuffle and a count); a job with one
    local worker verifies them in the commit step instead, two shuffles fewer."""

    def __init__(self, plan, output_dir: str, staging: str, overwrite: bool = False, table=None,
                 verify_in_parallel: bool = True):
        super().__init__()
        self.plan, self.output_dir, self.staging, self.overwrite, self.table = plan, output_dir, staging, overwrite, table
        self.verify_in_parallel = verify_in_parallel

    def expand(self, report):
        side = [beam.pvalue.AsSingleton(self.table)] if self.table is not None else []
        if not self.verify_in_parallel:
            return report | "VerifyAndCommit" >> beam.Map(
                _verify_and_commit, self.plan, self.output_dir, self.staging, self.overwrite, *side
            )
        verified = (
            report
            | "ListStaged" >> beam.FlatMap(_files_of)
            | "Spread" >> beam.Reshuffle()
            | "VerifyStaged" >> beam.Map(verify_file_counted, self.staging)
            | "CountVerified" >> beam.CombineGlobally(sum)
        )
        return report | "Commit" >> beam.Map(
            _commit, beam.pvalue.AsSingleton(verified), self.plan, self.output_dir, self.staging, self.overwrite, *side
        )


def _files_of(report):
    return list(report.files)


def verify_file_counted(written: WrittenFile, staging: str) -> int:
    verify_file(staging, written)
    beam.metrics.Metrics.counter("flanmix", "verified_files").inc()
    return 1


def _commit(report, verified, plan, output_dir, staging, overwrite, table=None):
    return commit(report, verified, plan, output_dir, staging, overwrite, table)


def _verify_and_commit(report, plan, output_dir, staging, overwrite, table=None):
    verified = sum(verify_file_counted(f, staging) for f in report.files)
    return commit(report, verified, plan, output_dir, staging, overwrite, table)
