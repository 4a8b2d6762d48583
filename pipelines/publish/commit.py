"""Atomic publishing: a reader that finds `manifest.json` finds a complete, verified corpus.

    OUTPUT/.staging-<run id>/tfrecord/...   1. the job writes every shard and dead-letter file here
                                               (and Pack's spilled runs, under _runs/)
                                            2. VerifyStaged re-reads each one: size, SHA-256 and row
                                               count must equal what the writer reported
    OUTPUT/tfrecord/... parquet/... dead_letter/...
                                            3. Commit moves them to their final names (an old manifest
                                               is deleted first when overwriting)
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

import json
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines import counters
from pipelines.formats.writers import WrittenFile
from pipelines.publish import card
from pipelines.publish import lease as publish_lease
from pipelines.publish import manifest as manifest_lib
from pipelines.publish import remote_deadline
from pipelines.publish.staging import STAGING_PREFIX, PublishError, _exists, _join, manifest_path
from pipelines.publish.verify import check_complete, verify_file


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
    publish_lease.remove_unlisted(output_dir, new_paths, _listing)  # e.g. shards of a killed build
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
    if "://" in staging:  # a lost endpoint must not stall the build in retries (remote_deadline)
        seconds = remote_deadline.verify_deadline(written.num_bytes)
        try:
            remote_deadline.call_with_deadline(lambda: verify_file(staging, written), seconds,
                                               f"verifying {_join(staging, written.path)}")
        except remote_deadline.RemoteTimeout as exc:
            raise PublishError(f"{exc}; not publishing") from None
    else:
        verify_file(staging, written)
    counters.VERIFIED_FILES.counter().inc()
    return 1


def _commit(report, verified, plan, output_dir, staging, overwrite, table=None):
    return commit(report, verified, plan, output_dir, staging, overwrite, table)


def _verify_and_commit(report, plan, output_dir, staging, overwrite, table=None):
    verified = sum(verify_file_counted(f, staging) for f in report.files)
    return commit(report, verified, plan, output_dir, staging, overwrite, table)
