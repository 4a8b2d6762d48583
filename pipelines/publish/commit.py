"""Atomic publishing: a reader that finds `manifest.json` finds a complete, verified corpus.

    OUTPUT/.staging-<run id>/tfrecord/...   1. the job writes every shard and dead-letter file here
                                               (and Pack's spilled runs, under _runs/)
                                            2. VerifyStaged re-reads each one: size, SHA-256 and row
                                               count must equal what the writer reported
    OUTPUT/tfrecord/... parquet/... dead_letter/...
                                            3. Commit moves them to their final names, beside the
                                               live corpus: a name the live manifest lists gets the
                                               run id before its extension (`generation_path`)
    OUTPUT/manifest.json                    4. the manifest is switched last, in one step; then the
                                               old corpus's files and this build's staging go

Works on every Beam filesystem (local, gs://, s3://): on object stores an object appears whole or not
at all, locally a file is renamed into place. A reader that follows the manifest sees the old corpus
or the new one, never a mix (a reader still reading the old files after the switch finds them
removed, and the next read of the manifest gives the new corpus). A run that dies at any point
leaves the old manifest (or none); its staging prefix (named from the plan's hash, so the same build
re-run reuses it) is overwritten by the next attempt. A publish removes only its own staging prefix:
another `.staging-*` may be a running build's (a dead build's is removed by the build that takes over
its lease, `publish.lease`). The run id is a pure function of the plan, never of time or workers.

On object stores renames are a copy and a delete per object: the commit runs them `RENAME_THREADS`
at a time, and every existence check comes from one listing of the output and one of the staging
prefix.

Destinations: `resolve_output(OUTPUT, mixture, versioned=False)` is OUTPUT itself; with
`versioned=True` it is `OUTPUT/MIXTURE/vN`, N one more than the newest complete version (a version
directory without a manifest, left by a run that died, is reused; one a running build holds is skipped).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
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


RENAME_THREADS = 16  # object stores copy each object in its own request: this many at a time


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def _listing(prefix: str) -> set[str]:
    """Every file under a directory / object prefix, in one listing."""
    try:
        return {m.path for m in FileSystems.match([_join(prefix, "**")])[0].metadata_list}
    except Exception:  # noqa: BLE001 - a prefix that does not exist holds nothing
        return set()


def _norm(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _move_all(sources: list[str], destinations: list[str], threads: int = RENAME_THREADS) -> None:
    """Rename sources to destinations. Locally one call (a rename is a metadata operation); on an
    object store a rename is a copy and a delete per object, so they run `threads` at a time."""
    for destination in destinations:
        if "://" not in destination:
            os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    if not sources:
        return
    if "://" not in destinations[0] or len(sources) == 1 or threads <= 1:
        _move(sources, destinations)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(threads, len(sources)),
                                               thread_name_prefix="flanmix-commit") as pool:
        for future in [pool.submit(_move, [s], [d]) for s, d in zip(sources, destinations)]:
            future.result()  # the first failure is raised; a retried commit finishes the rest


def _move(sources: list[str], destinations: list[str]) -> None:
    FileSystems.rename(sources, destinations)


def _delete(paths: list[str], present: set[str] | None = None) -> None:
    """Delete those of `paths` that exist (`present`: a listing that already says which), in one call."""
    if present is None:
        existing = [p for p in paths if _exists(p)]
    else:
        have = {_norm(p) for p in present}
        existing = [p for p in paths if _norm(p) in have]
    if existing:
        FileSystems.delete(existing)


def _delete_staging(staging: str) -> None:
    """Remove this build's staging prefix, and only it: another `.staging-*` under the output may
    belong to a build that is running (a dead build's is removed by the next build that takes the
    output's lease, see publish.lease). Best effort: the corpus is already published."""
    try:
        if "://" in staging:
            leftovers = sorted(_listing(staging))
            if leftovers:
                FileSystems.delete(leftovers)
        elif os.path.isdir(staging):
            FileSystems.delete([staging])
    except Exception:  # noqa: BLE001
        pass


def generation_path(path: str, run: str) -> str:
    """`parquet/x-00000-of-00002.parquet` -> `parquet/x-00000-of-00002.<run>.parquet`: the name an
    --overwrite build gives its files so they never replace a file the live manifest lists."""
    directory, _, name = path.rpartition("/")
    stem, dot, ext = name.partition(".")
    renamed = f"{stem}.{run}{dot}{ext}" if dot else f"{name}.{run}"
    return f"{directory}/{renamed}" if directory else renamed


def _listed(manifest: dict) -> list[str]:
    return [f["path"] for f in manifest.get("files", [])] + list(manifest.get("dead_letter", {}).get("files", []))


def _names_in(live: dict, files, run: str) -> dict[str, str] | None:
    """The names a manifest gives these files (plain or `generation_path`), if it lists them all."""
    shas = {f.get("path"): f.get("sha256") for f in live.get("files", [])}
    dead = set(live.get("dead_letter", {}).get("files", []))
    names = {}
    for f in files:
        found = [c for c in (f.path, generation_path(f.path, run)) if shas.get(c) == f.sha256 or c in dead]
        if not found:
            return None
        names[f.path] = found[0]
    return names


def _live_manifest(path: str) -> tuple[bytes | None, dict]:
    try:
        data = _read(path)
    except Exception:  # noqa: BLE001 - no manifest (or none readable): no live corpus
        return None, {}
    try:
        return data, json.loads(data.decode("utf-8"))
    except ValueError:
        return data, {}


def commit(report, verified: int, plan, output_dir: str, staging: str, overwrite: bool, table=None) -> dict:
    """Move the verified staged files to their final names and switch manifest.json last.

    The live corpus is never touched before the switch: a file whose name the live manifest lists
    (an --overwrite) is published under `generation_path` instead, beside the old one, so a reader
    that follows a manifest reads the old corpus or the new one, never a mix. The manifest is then
    replaced in one step (a local rename, one object write), and only after that are the old
    corpus's files, and any file the new manifest does not list, removed.

    Idempotent, so a runner may retry it: files already moved are recognised, and a manifest already
    in place with the same bytes means a previous attempt finished."""
    files = tuple(report.files)
    if verified != len(files):
        raise PublishError(f"{verified} of {len(files)} staged files were verified; not publishing")
    check_complete(files)
    final_manifest = manifest_path(output_dir)
    staged_manifest = _join(staging, manifest_lib.MANIFEST_NAME)
    live_bytes, live = _live_manifest(final_manifest)

    def stage_manifest(names: dict[str, str]) -> tuple[dict, bytes]:
        renamed = dataclasses.replace(report, files=tuple(dataclasses.replace(f, path=names[f.path]) for f in files))
        m = manifest_lib.write_manifest(renamed, plan, staging, table) if table is not None else \
            manifest_lib.write_manifest(renamed, plan, staging)
        return m, _read(staged_manifest)

    names = {f.path: f.path for f in files}
    manifest, data = stage_manifest(names)
    if live_bytes is not None and live_bytes != data:
        run = staging.rstrip("/").rsplit("/", 1)[-1][len(STAGING_PREFIX):]
        recovered = _names_in(live, files, run)  # a retried commit that had already switched?
        if recovered is not None and recovered != names:
            manifest, data = stage_manifest(recovered)
            names = recovered
        if live_bytes != data:  # a new corpus: each file whose name the live one lists goes beside it
            listed = set(_listed(live))
            names = {f.path: generation_path(f.path, run) if f.path in listed else f.path for f in files}
            manifest, data = stage_manifest(names)
    card_files = card.stage_card(manifest, staging, verify_file)  # README.md + card/*.png, verified
    new_paths = set(names.values())

    if live_bytes is not None:
        if live_bytes == data:  # a previous attempt of this commit got this far
            card.restore_card(card_files, staging, output_dir)
            _remove_stale(output_dir, new_paths, [], {_norm(p) for p in _listing(output_dir)})
            _delete_staging(staging)
            return manifest
        if not overwrite:
            raise PublishError(f"{output_dir} received a manifest while this build ran; not replacing it (--overwrite)")

    # published and old files, and the staged ones (a local listing skips the hidden staging folder)
    present = {_norm(p) for p in _listing(output_dir) | _listing(staging)}
    moves = [(_join(staging, f.path), _join(output_dir, names[f.path])) for f in files] + \
        [(_join(staging, f.path), _join(output_dir, f.path)) for f in card_files]
    for source, destination in moves:  # a retried commit finds some files already moved
        if _norm(source) not in present and _norm(destination) not in present:
            raise PublishError(f"{destination}: neither the staged copy nor a published copy exists")
    data_moves = [(s, d) for s, d in moves[:len(files)] if _norm(s) in present]
    card_moves = [(s, d) for s, d in moves[len(files):] if _norm(s) in present]
    _move_all([s for s, _ in data_moves], [d for _, d in data_moves])  # beside the live corpus
    _move_all([s for s, _ in card_moves], [d for _, d in card_moves])  # names the new files, all in place
    _move_all([staged_manifest], [final_manifest])  # the switch: one rename / one object
    old = [p for p in _listed(live) + card.stale_plots(card_files) if p not in new_paths]
    _remove_stale(output_dir, new_paths, old, present)
    _delete_staging(staging)
    return manifest


def _remove_stale(output_dir: str, keep: set[str], old: list[str], present: set[str]) -> list[str]:
    """After the switch: delete the old corpus's files (`old`, relative paths) and every file under
    the corpus folders (`lease.DATA_FOLDERS`) that the new manifest does not list (e.g. the shards
    of a killed --num_shards 200 build), in one call. `present` is a listing taken before the moves."""
    folders = tuple(_norm(_join(output_dir, f)).rstrip("/") + "/" for f in publish_lease.DATA_FOLDERS)
    kept = {_norm(_join(output_dir, p)) for p in keep}
    doomed = {p for p in present if p.startswith(folders) and p not in kept}
    doomed |= {q for q in (_norm(_join(output_dir, p)) for p in old) if q in present and q not in kept}
    if doomed:
        FileSystems.delete(sorted(doomed))
    return sorted(doomed)


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
