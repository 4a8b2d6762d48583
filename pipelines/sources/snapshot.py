"""`flanmix sources snapshot`: read every source of a mixture once, through its own loader, and pin it.

    plan_snapshot (launcher)   each entry's loader plans its SourceShards, as a build would; a source
                               that cannot be planned is recorded as failed with the loader's reason
                               (--strict: stop here, nothing written). Its key (loader type + args +
                               source split + SHA-256 of its local source files) is compared with the
                               previous sources.json: an unchanged source whose files are all present
                               is kept as it is, nothing is read.
    FetchShard (workers)       one Parquet file per SourceShard (`encoding`), staged under
                               ROOT/.staging-<run id>/; a shard that fails to read fails its source
                               (its reason recorded), not the job.
    commit (one step)          every staged file re-read (size, SHA-256, Parquet row count:
                               publish.verify), moved to ROOT/data/DATASET/KEY/..., sources.json
                               written last, then files no longer listed and the staging removed.

Data files live under a folder named by the source's key, so a re-run never overwrites a file the
current sources.json lists: a reader sees the old snapshot or the new one, never a mix. A source
that fails to refresh but was fetched before with the same loader arguments keeps its pinned copy
(recorded with `refresh_failed`), so a snapshot never loses data because a network went away.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import pipelines
from pipelines import counters
from pipelines.errors import LoaderError
from pipelines.formats.writers import WrittenFile
from pipelines.loaders import SourceShard, get_loader
from pipelines.planning import shard_count
from pipelines.publish.staging import STAGING_PREFIX, run_id
from pipelines.publish.verify import verify_file
from pipelines.runner.beam_options import LOCATION_KEYS
from pipelines.sources import encoding
from pipelines.sources.manifest import SNAPSHOT_VERSION, SOURCES_NAME, SnapshotError, dumps, join, load

HASH_CHUNK = 8 * 1024 * 1024
LIBRARIES = {  # what each loader's rows depend on besides flanmix itself
    "tfds": ("tensorflow-datasets", "tensorflow"),
    "hf_datasets": ("datasets", "pyarrow"),
    "parquet": ("pyarrow",),
}
COMMON_LIBRARIES = ("apache-beam", "pyarrow")


@dataclass(frozen=True)
class SourceJob:
    """One source to fetch: its record (everything but shards and counts) and its planned shards."""

    dataset: str
    record: Mapping[str, Any]
    shards: tuple[tuple[SourceShard, str], ...]  # (shard, path relative to the root)
    # rows each shard adds to the launcher's estimate (shard_count.planned_rows), recorded so that a
    # build from the snapshot sizes its output and weights exactly as a build from the sources
    planned_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class SnapshotPlan:
    root: str
    mixture: str
    jobs: tuple[SourceJob, ...]
    kept: Mapping[str, Mapping[str, Any]]  # dataset -> its record in the previous sources.json, unchanged
    failed: Mapping[str, Mapping[str, Any]]  # dataset -> record with status "failed" and the reason
    previous: Mapping[str, Any] = field(default_factory=dict)  # the previous sources.json ({} if none)
    strict: bool = False

    @property
    def staging(self) -> str:
        return join(self.root, STAGING_PREFIX + run_id(self))


def library_versions(loader_type: str) -> dict[str, str]:
    out = {"flanmix": pipelines.__version__}
    for name in (*COMMON_LIBRARIES, *LIBRARIES.get(loader_type, ())):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_source_files(shards: list[SourceShard]) -> dict[str, str]:
    """SHA-256 of every local file the shards' loader args name (files, globs, folders such as a
    prepared TFDS version or a save_to_disk folder). Remote sources have none: their key is their
    loader arguments."""
    found: set[str] = set()

    def add(item: Any) -> None:
        if isinstance(item, Mapping):
            for v in item.values():
                add(v)
        elif isinstance(item, (list, tuple)):
            for v in item:
                add(v)
        elif isinstance(item, str) and item and "://" not in item:
            path = item[len("file://"):] if item.startswith("file://") else item
            if os.path.isdir(path):
                found.update(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
            elif os.path.isfile(path):
                found.add(path)
            elif any(c in path for c in "*?["):
                found.update(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))

    for shard in shards:
        for key in LOCATION_KEYS:
            if key == "data_dir" and "_builder_dir" in shard.args:
                continue  # a TFDS data_dir holds every prepared dataset; the version folder is what is read
            add(shard.args.get(key))
    return {p: file_sha256(p) for p in sorted(found)}


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def _portable_path(value: str, base: str) -> str:
    """A local absolute path relative to `base` (the entry file's folder) when the two share a folder
    below the top level (a checkout, a home or temp folder): the catalog resolves relative paths
    against the entry file, so a checkout elsewhere, or the copy of the catalog beside a copied
    snapshot, names the same file the same way. Other paths stay as they are."""
    if not value.startswith("/") or not base.startswith("/"):
        return value
    common = os.path.commonpath([value, base])
    if common.count("/") < 2:
        return value
    return os.path.relpath(value, base)


PATH_KEYS = ("path", "paths", "data_dir", "data_files", "root")  # the args the catalog resolves (catalog._resolve_args)


def _portable(value: Any, base: str) -> Any:
    if isinstance(value, Mapping):
        return {k: _portable(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, base) for v in value]
    return _portable_path(value, base) if isinstance(value, str) else value


def portable_args(args: Mapping[str, Any], base: str) -> dict:
    return {k: _portable(v, base) if k in PATH_KEYS else v for k, v in args.items()}


def loader_identity(entry) -> dict:
    """How sources.json names an entry's loader: type and arguments, local paths relative to the
    entry's file (`_portable_path`). What `build --sources` compares with the catalog."""
    base = os.path.dirname(os.path.realpath(entry.source_path)) if entry.source_path else ""
    return _json_safe({"type": entry.loader_type, "args": portable_args(dict(entry.loader_args), base)})


def source_key(record: Mapping[str, Any]) -> str:
    """Loader identity, splits and the content (not the place) of the local source files."""
    identity = {k: record[k] for k in ("loader", "split", "source_split")}
    identity["source_files"] = sorted(record["source_files"].values())
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _same_loader(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("loader", "split", "source_split"))


def _listing(root: str) -> dict[str, int]:
    """Every file under ROOT/data/ -> its size, in one listing."""
    try:
        return {m.path: m.size_in_bytes for m in FileSystems.match([join(root, "data", "**")])[0].metadata_list}
    except Exception:  # noqa: BLE001 - nothing there yet
        return {}


def plan_snapshot(mixture, catalog, root: str, strict: bool = False) -> SnapshotPlan:
    """What a snapshot run must fetch, keep and report as failed. Raises LoaderError under `strict`
    when a source cannot be planned, before anything is written."""
    from pipelines.definitions.mixtures import resolve_datasets

    previous_snapshot = load(root, required=False)
    previous = dict(previous_snapshot.data) if previous_snapshot else {}
    before = previous.get("sources", {})
    present = _listing(root) if before else {}
    jobs, kept, failed = [], {}, {}
    for entry in resolve_datasets(mixture, catalog):
        source_split = entry.splits[mixture.split]
        record: dict[str, Any] = {
            "loader": loader_identity(entry),
            "split": mixture.split, "source_split": source_split, "fields": dict(entry.fields),
            "library_versions": library_versions(entry.loader_type),
        }
        try:
            shards = get_loader(entry.loader_type).plan(entry.name, mixture.split, source_split, entry.loader_args)
        except LoaderError as exc:
            if strict:
                raise LoaderError(f"--strict: source {entry.name} of mixture {mixture.name} cannot be fetched, "
                                  f"nothing was written: {exc}") from None
            failed[entry.name] = {**record, "status": "failed", "reason": str(exc), "source_files": {}}
            continue
        record["source_files"] = local_source_files(shards)
        record["key"] = source_key(record)
        old = before.get(entry.name)
        if old and old.get("status") == "ok" and old.get("key") == record["key"] and all(
                present.get(join(root, s["path"])) == s["num_bytes"] for s in old["shards"]):
            kept[entry.name] = old
            continue
        folder = f"data/{_safe(entry.name)}/{record['key'][:16]}"
        n = len(shards)
        jobs.append(SourceJob(entry.name, record, tuple(
            (s, f"{folder}/{_safe(mixture.split)}-{s.index:05d}-of-{n:05d}.parquet") for s in shards),
            tuple(shard_count.planned_rows(shards))))
    return SnapshotPlan(root, mixture.name, tuple(jobs), kept, failed, previous, strict)


# --- workers ---------------------------------------------------------------------------------

def _work_items(plan: SnapshotPlan) -> list[tuple]:
    return [(job.dataset, shard, path, dict(job.record["fields"]), planned)
            for job in plan.jobs for (shard, path), planned in zip(job.shards, job.planned_rows)]


def fetch_shard(item: tuple, staging: str) -> dict:
    """Read one source shard through its loader and stage it as Parquet. A failure is the result
    (with the reason), so one broken source costs that source, not the job."""
    dataset, shard, path, declared, planned = item
    result = {"dataset": dataset, "index": shard.index, "path": path, "source_bytes": shard.size_bytes,
              "planned_rows": planned}
    try:
        loader = get_loader(shard.loader_type)
        rows = list(loader.read(shard))
        # the survey's count without reading, where the source's loader has one (it may differ from
        # the rows that pass the field check: a build from the snapshot must count the same way)
        result["count_rows"] = loader.count_rows(shard) if hasattr(loader, "count_rows") else None
        data = encoding.to_parquet_bytes(encoding.encode_rows(rows, declared, f"dataset {dataset}"))
    except Exception as exc:  # noqa: BLE001 - loaders raise many types (network, format, ...)
        reason = str(exc) if isinstance(exc, LoaderError) else f"{type(exc).__name__}: {exc}"
        return {**result, "error": f"reading {dataset} ({shard.loader_type}) shard {shard.index}: {reason}"}
    with FileSystems.create(join(staging, path)) as handle:
        handle.write(data)
    counters.READ_ROWS.counter(dataset).inc(len(rows))
    return {**result, "error": None, "num_rows": len(rows), "num_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "dead_letters": sum(r.fields is None for r in rows)}


SHARD_KEYS = ("path", "index", "num_rows", "num_bytes", "sha256", "source_bytes", "planned_rows", "count_rows")


# --- commit ----------------------------------------------------------------------------------

def _delete(paths: list[str]) -> None:
    existing = [p for p in paths if FileSystems.exists(p)]
    if existing:
        FileSystems.delete(existing)


def _delete_tree(prefix: str) -> None:
    try:
        if "://" in prefix:
            found = [m.path for m in FileSystems.match([join(prefix, "**")])[0].metadata_list]
            if found:
                FileSystems.delete(found)
        elif os.path.isdir(prefix):
            FileSystems.delete([prefix])
    except Exception:  # noqa: BLE001 - best effort: the snapshot is already published
        pass


def build_sources(plan: SnapshotPlan, results: list[dict]) -> tuple[dict, list[dict], dict[str, str]]:
    """(the new sources.json, the staged shard results to publish, dataset -> why this run could not
    fetch it)."""
    by_dataset: dict[str, list[dict]] = {}
    for r in results:
        by_dataset.setdefault(r["dataset"], []).append(r)
    before = plan.previous.get("sources", {})
    sources = dict(before)  # sources of other mixtures stay
    publish: list[dict] = []
    failures = dict(plan.failed)
    for job in plan.jobs:
        got = sorted(by_dataset.get(job.dataset, []), key=lambda r: r["index"])
        errors = [r["error"] for r in got if r["error"]]
        if errors or len(got) != len(job.shards):
            failures[job.dataset] = {**job.record, "status": "failed",
                                     "reason": errors[0] if errors else "not every shard was read"}
            continue
        split = job.record["split"]
        sources[job.dataset] = {
            **job.record, "status": "ok",
            "rows": {split: sum(r["num_rows"] for r in got)},
            "dead_letters": {split: sum(r["dead_letters"] for r in got)},
            "shards": [{k: r[k] for k in SHARD_KEYS} for r in got],
        }
        publish.extend(got)
    for name, record in plan.kept.items():
        sources[name] = record
    for name, record in failures.items():
        old = before.get(name)
        if old and old.get("status") == "ok" and _same_loader(old, record):
            sources[name] = {**old, "refresh_failed": record["reason"]}  # keep what is pinned
        else:
            sources[name] = {k: v for k, v in record.items() if k != "key"}
    mixtures = sorted(set(plan.previous.get("mixtures", [])) | {plan.mixture})
    data = {"snapshot_version": SNAPSHOT_VERSION, "flanmix_version": pipelines.__version__, "mixtures": mixtures,
            "sources": dict(sorted(sources.items()))}
    return data, publish, {n: r["reason"] for n, r in sorted(failures.items())}


def commit_snapshot(results: list[dict], plan: SnapshotPlan) -> dict:
    """Verify and move the staged files, write sources.json last, remove unlisted files."""
    data, publish, failed = build_sources(plan, results)
    if plan.strict and failed:
        name = next(iter(failed))
        raise SnapshotError(f"--strict: source {name} could not be fetched, nothing was published: {failed[name]}")
    staging = plan.staging
    for r in publish:
        verify_file(staging, WrittenFile(r["path"], r["num_rows"], r["num_bytes"], r["sha256"]))
        counters.VERIFIED_FILES.counter().inc()
    moves = [(join(staging, r["path"]), join(plan.root, r["path"])) for r in publish]
    for _, destination in moves:
        if "://" not in destination:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
    if moves:  # a rename replaces a file a run that died before its sources.json left there
        FileSystems.rename([s for s, _ in moves], [d for _, d in moves])
    staged_manifest = join(staging, SOURCES_NAME)
    with FileSystems.create(staged_manifest) as handle:
        handle.write(dumps(data))
    final = join(plan.root, SOURCES_NAME)
    FileSystems.rename([staged_manifest], [final])
    listed = {join(plan.root, s["path"]) for src in data["sources"].values() for s in src.get("shards", [])}
    _delete(sorted(p for p in _listing(plan.root) if p not in listed))
    _delete_tree(staging)
    return data


def _fetch_listed(item, staging: str) -> list[dict]:
    return [fetch_shard(item, staging)] if item is not None else []


def construct(pipeline: beam.Pipeline, plan: SnapshotPlan, parallel: bool = False):
    items = _work_items(plan)
    results = (
        pipeline
        | "ListSources" >> beam.Create(items or [None], reshuffle=parallel)
        | "FetchShards" >> beam.FlatMap(_fetch_listed, plan.staging)
        | "Collect" >> beam.combiners.ToList()
    )
    return results | "Commit" >> beam.Map(commit_snapshot, plan)


def run_snapshot(plan: SnapshotPlan, beam_args: list[str] | None = None, progress_every: float = 0.0) -> dict:
    """Run the snapshot job (the build's runner machinery) and return the sources.json written."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    from pipelines.runner import progress
    from pipelines.runner.beam_options import LOCAL_RUNNER, is_local, pipeline_options

    options = pipeline_options(beam_args or [])
    FileSystems.set_options(options)
    runner = str(options.view_as(StandardOptions).runner or LOCAL_RUNNER)
    parallel = not is_local(["--runner", runner]) or (options.view_as(DirectOptions).direct_num_workers or 1) > 1
    pipeline = beam.Pipeline(runner=progress.runner_for(options, progress_every), options=options)
    construct(pipeline, plan, parallel)
    progress.run_and_report(pipeline, progress_every)
    snapshot = load(plan.root)
    return dict(snapshot.data)
