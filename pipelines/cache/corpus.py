"""The whole-corpus layer of `--cache`: an unchanged build is answered without running the job.

Per-file entries (`stage.CachedEncode`) save reading, rendering and tokenizing, but packing,
writing, verifying and the data card still cost most of a build. So a build with `--cache` also
keys its whole published corpus, on the launcher, by `corpus_key`: the complete plan (every catalog
entry, bound template and template file hash, the mixture, seed, lengths, layout, shard count,
targets, few-shot, render and dead-letter settings; all but the cache folder), the vocabulary's
SHA-256, the flanmix version, the code fingerprint and the SHA-256 of every source file's bytes.
Output bytes are a pure function of these (the project's determinism rule: runner and worker count
never change them), so a stored corpus with that key is the corpus a cold build would publish.

    <cache>/v1/corpus/<key>/<path>        the published files (shards, dead letters, card)
    <cache>/v1/corpus/<key>.json          the index, written last (temp + rename): every file's size
                                          and SHA-256, the manifest without its `cache` section, and
                                          the SHA-256 of the index itself

`replay` copies the files into the build's staging prefix, checking each one's size and SHA-256,
and publishes them like `publish.commit` does (old manifest removed first, files moved, manifest
last); any missing or corrupt file is a warning and the build runs normally. `store` runs after a
successful job, only when no source file changed while it ran. Only plans whose every source is a
single file (`keys.source_file`) and whose sources total at most `MAX_SOURCE_BYTES` get a corpus key:
the launcher hashes them all, one after another.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

import pipelines
from pipelines.cache import keys
from pipelines.publish import lease as publish_lease
from pipelines.publish.staging import _canonical, _exists, _join, manifest_path, staging_dir
from flanmix_corpus.reader import MANIFEST_NAME

MAX_SOURCE_BYTES = 4 * 1024 ** 3
_LOG = logging.getLogger(__name__)


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def _write(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)


def source_hashes(plan) -> list[str] | None:
    """SHA-256 of every source file in plan order, or None when a source has no single file or the
    sources are too large to hash on the launcher."""
    paths = [keys.source_file(s) for s in plan.sources]
    if any(p is None for p in paths) or sum(s.size_bytes for s in plan.sources) > MAX_SOURCE_BYTES:
        return None
    return [keys.file_sha256(p) for p in paths]


def corpus_key(plan, hashes: list[str]) -> str:
    identity = _canonical(dataclasses.replace(plan, cache_dir=""))
    text = json.dumps({"format": keys.FORMAT_VERSION, "flanmix": pipelines.__version__, "code": keys.code_fingerprint(),
                       "plan": identity, "sources": hashes}, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _index_path(cache_dir: str, key: str) -> str:
    return _join(cache_dir, "v1", "corpus", key + ".json")


def _files_dir(cache_dir: str, key: str) -> str:
    return _join(cache_dir, "v1", "corpus", key)


def manifest_bytes(manifest: dict) -> bytes:
    """As `publish.manifest.write_manifest` serialises it."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _index_digest(index: dict) -> str:
    body = {k: v for k, v in index.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _load_index(cache_dir: str, key: str) -> dict | None:
    path = _index_path(cache_dir, key)
    try:
        data = _read(path)
    except Exception:  # noqa: BLE001 - not stored
        return None
    try:
        index = json.loads(data)
        if index.get("key") != key or index.get("sha256") != _index_digest(index):
            raise ValueError("checksum or key mismatch")
        return index
    except ValueError as exc:
        _LOG.warning("flanmix cache: ignoring the corpus index %s: %s", path, exc)
        return None


def _replay_manifest(manifest: dict, plan) -> dict:
    """The stored manifest plus a `cache` section saying every source file was served (from the corpus)."""
    per: dict = {}
    for shard in plan.sources:
        per[shard.dataset] = per.get(shard.dataset, 0) + 1
    cache = {"corpus_hit": True, "hits": len(plan.sources), "misses": 0, "corrupt": 0, "not_stored": 0,
             "uncacheable": 0, "task_hits": 0, "task_misses": 0, "group_hits": 0, "group_misses": 0,
             "datasets": {d: {"hits": n, "misses": 0, "uncacheable": 0, "task_hits": 0, "task_misses": 0,
                              "group_hits": 0, "group_misses": 0}
                          for d, n in sorted(per.items())}}
    return {**manifest, "cache": cache}


@dataclasses.dataclass
class Lookup:
    """What `replay` found: the key to `store` under after a job (None: no corpus layer for this plan)."""

    key: str | None
    hashes: list[str] | None
    replayed: bool = False


def replay(plan, output_dir: str, overwrite: bool) -> Lookup:
    """Publish the stored corpus of this plan into `output_dir` if there is one (see the module
    docstring). Call inside the output's lease, after `check_destination`."""
    hashes = source_hashes(plan)
    if hashes is None:
        return Lookup(None, None)
    key = corpus_key(plan, hashes)
    index = _load_index(plan.cache_dir, key)
    if index is None:
        return Lookup(key, hashes)
    live = _live_manifest(output_dir)
    if live is not None and live != index["manifest"]:
        # Another corpus is live here (an --overwrite of a different build): replaying would move files
        # over the names it lists. The job publishes beside it and switches the manifest last instead
        # (publish.commit); its per-file entries still serve.
        _LOG.info("flanmix cache: %s holds another corpus; building it beside that one", output_dir)
        return Lookup(key, hashes)
    staging = staging_dir(output_dir, (dataclasses.replace(plan, cache_dir=""), "corpus-cache"))
    source = _files_dir(plan.cache_dir, key)
    try:
        for f in index["files"]:
            data = _read(_join(source, f["path"]))
            if len(data) != f["num_bytes"] or hashlib.sha256(data).hexdigest() != f["sha256"]:
                raise ValueError(f"{f['path']}: size or SHA-256 differs from the index")
            _write(_join(staging, f["path"]), data)
    except Exception as exc:  # noqa: BLE001 - a damaged corpus entry is a miss
        _LOG.warning("flanmix cache: not using the stored corpus %s: %s; building", key[:12], exc)
        _delete_prefix(staging)
        return Lookup(key, hashes)
    _publish(index, _replay_manifest(index["manifest"], plan), output_dir, staging, overwrite)
    return Lookup(key, hashes, replayed=True)


def _live_manifest(output_dir: str) -> dict | None:
    """The output's live manifest without its `cache` section; None when there is none (or it is unreadable)."""
    path = manifest_path(output_dir)
    if not _exists(path):
        return None
    try:
        manifest = json.loads(_read(path).decode("utf-8"))
    except ValueError:
        return {"unreadable": True}
    manifest.pop("cache", None)
    return manifest


def _delete_prefix(prefix: str) -> None:
    try:
        paths = [m.path for m in FileSystems.match([_join(prefix, "**")])[0].metadata_list]
        if paths:
            FileSystems.delete(paths)
        if "://" not in prefix and FileSystems.exists(prefix):
            FileSystems.delete([prefix])
    except Exception:  # noqa: BLE001 - best effort
        pass


def _publish(index: dict, manifest: dict, output_dir: str, staging: str, overwrite: bool) -> None:
    """`publish.commit`'s order: the old manifest goes first, then the files move, the manifest last."""
    from pipelines.publish import card_plots, commit

    final_manifest = manifest_path(output_dir)
    old_files: list[str] = []
    if _exists(final_manifest):
        if not overwrite:
            raise commit.PublishError(f"{output_dir} received a manifest while this build ran; not replacing it (--overwrite)")
        try:
            old = json.loads(_read(final_manifest).decode("utf-8"))
            old_files = [f["path"] for f in old.get("files", [])] + list(old.get("dead_letter", {}).get("files", []))
        except ValueError:
            old_files = []
        commit._delete([final_manifest])
    paths = [f["path"] for f in index["files"]]
    commit._move_all([_join(staging, p) for p in paths], [_join(output_dir, p) for p in paths])
    new_paths = set(paths)
    stale_plots = [f"card/{name}.png" for name in card_plots.PLOT_NAMES if f"card/{name}.png" not in new_paths]
    commit._delete([_join(output_dir, p) for p in old_files + stale_plots if p not in new_paths])
    publish_lease.remove_unlisted(output_dir, new_paths, commit._listing)
    staged_manifest = _join(staging, MANIFEST_NAME)
    _write(staged_manifest, manifest_bytes(manifest))
    commit._move_all([staged_manifest], [final_manifest])
    commit._delete_staging(staging)  # this replay's staging only


def store(plan, lookup: Lookup, output_dir: str) -> bool:
    """After a successful job: keep the published corpus under its key. False (nothing stored) when
    the plan has no corpus key, a source changed while the job ran, or writing failed (a warning)."""
    if lookup.key is None or lookup.replayed:
        return False
    if source_hashes(plan) != lookup.hashes:
        _LOG.warning("flanmix cache: a source file changed while the build ran; its corpus is not stored")
        return False
    try:
        manifest = json.loads(_read(manifest_path(output_dir)).decode("utf-8"))
        manifest.pop("cache", None)
        from pipelines.publish import card_plots

        paths = ([f["path"] for f in manifest["files"]] + list(manifest["dead_letter"]["files"]) + ["README.md"]
                 + [p.file for p in card_plots.plot_data(manifest)])
        target = _files_dir(plan.cache_dir, lookup.key)
        files = []
        for path in paths:
            data = _read(_join(output_dir, path))
            _write(_join(target, path), data)
            files.append({"path": path, "num_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        index = {"key": lookup.key, "files": files, "manifest": manifest}
        index["sha256"] = _index_digest(index)
        final = _index_path(plan.cache_dir, lookup.key)
        temp = f"{final}.tmp-{uuid.uuid4().hex}"
        _write(temp, json.dumps(index, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        FileSystems.rename([temp], [final])
        return True
    except Exception as exc:  # noqa: BLE001 - the corpus is published; the cache is an optimisation
        _LOG.warning("flanmix cache: storing the corpus failed: %s", exc)
        return False
