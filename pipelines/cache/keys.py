"""What a cache entry is keyed by: everything the read, render and tokenize stages of one source file
depend on, by content (never by path or modification time), hashed with SHA-256.

Two parts. `task_keys` (on the launcher, from the plan) covers what is fixed before the job: the
dataset's catalog entry and its bound templates, the template files, the vocabulary, seed, lengths,
layout, overlong policy, shard count (an example's output shard is part of what is stored), few-shot
and render settings, the flanmix version and `code_fingerprint`. `entry_key` (on the worker) adds the
source file's own SHA-256 and the task's row of the sampling table, which only the survey knows: its
rate and prompt settings and its exemplar pool (the rows other examples of the task may show).

A task with exemplar groups (`planning.exemplars.wants_groups`: a few-shot setting and two rows or
more) has no per-file entry: its prompts show rows of its other files, and its groups' setting
offsets are numbered across tasks, so no key of one file could cover them. It has one entry per
exemplar group instead (`group_key`), keyed after the rows are grouped: the task key, the group's
ordinal among all tasks' groups, the task's rate and prompt settings, and the content of every row
of the group, which is everything its prompts are made of (`stage.CachedGroupEncodeFn`). Above the
groups sits one index per task (`task_entry_key`), keyed before any row is read: the task key, the
SHA-256 of every one of its files, its sampling row and its groups' ordinals (which the survey fixes
from all tasks' row counts). It lists the entries of all the task's groups, so an unchanged few-shot
task is replayed without reading or grouping its rows (`stage.TaskGate`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pipelines
from pipelines.loaders import SourceShard
from pipelines.loaders import files
from pipelines.planning.slices import RenderSlice, TokenizeSlice

FORMAT_VERSION = 1  # of the entry file (store.py); part of every key

# Loaders whose read of a SourceShard reads exactly the one file `args["path"]` and nothing else. A
# shard of any other loader (a Hugging Face dataset folder, TFDS) has no single file to hash, so it is
# built every time and counted as `cache_uncacheable`.
SINGLE_FILE_LOADERS = frozenset({"cot_tsv", "niv2_json", "jsonl", "csv", "parquet"})


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(obj: Any):
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes):
        return obj.hex()
    return repr(obj)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the Python files of `pipelines` and `flanmix_corpus` and the versions of the
    libraries that render and encode: an edit to the code, or another Jinja or SentencePiece, never
    reads an entry an older build wrote, even within one flanmix version."""
    import jinja2
    import numpy
    import sentencepiece

    h = hashlib.sha256()
    for package in (Path(pipelines.__file__).parent, Path(pipelines.__file__).parent.parent / "flanmix_corpus"):
        for path in sorted(package.rglob("*.py")):
            h.update(str(path.relative_to(package.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"jinja2 {jinja2.__version__} sentencepiece {sentencepiece.__version__} numpy {numpy.__version__}".encode())
    return h.hexdigest()


def _template_content(template) -> dict:
    """A bound template as it renders: every field but where its file lies."""
    return {f.name: getattr(template, f.name) for f in dataclasses.fields(template) if f.name != "source_path"}


def task_keys(plan) -> dict[str, str]:
    """dataset -> the launcher-side part of its entries' keys (see the module docstring)."""
    common = {
        "format": FORMAT_VERSION, "flanmix": pipelines.__version__, "code": code_fingerprint(),
        "vocab_sha256": plan.vocab_sha256, "seed": plan.seed, "split": plan.split, "num_shards": plan.num_shards,
        "layout": plan.layout, "inputs_length": plan.inputs_length, "targets_length": plan.targets_length,
        "decoder_length": plan.decoder_length, "overlong": plan.overlong, "few_shot": plan.few_shot,
        "render_budget": plan.render_budget, "option_marker_answers": plan.option_marker_answers,
        "vocab_whitespace": plan.vocab_whitespace, "exemplar_groups": plan.exemplar_groups,
        # Every field the fused stages read (their slices), so a field a stage starts to read is keyed too;
        # the vocabulary by its SHA-256 above, not by where it lies.
        "slices": {f"{cls.__name__}.{f.name}": getattr(plan, f.name) for cls in (RenderSlice, TokenizeSlice)
                   for f in dataclasses.fields(cls) if f.name not in ("datasets", "vocab_path")},
    }
    out = {}
    for name, ds in plan.datasets.items():
        entry = plan.catalog[name] if plan.catalog is not None and name in plan.catalog else None
        families = tuple(entry.templates) if entry is not None else ()
        out[name] = _digest({
            **common, "dataset": name, "entry_sha256": ds.content_sha256, "fields": dict(ds.fields),
            "templates": [_template_content(t) for t in ds.templates],
            "template_files": {f: plan.template_hashes.get(f, "") for f in sorted(families)},
        })
    return out


def source_file(shard: SourceShard) -> str | None:
    """The one file a shard's read reads, or None when its loader reads something else."""
    if shard.loader_type not in SINGLE_FILE_LOADERS or not shard.args.get("path"):
        return None
    return str(shard.args["path"])


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes as stored (before any decompression), streamed."""
    h = hashlib.sha256()
    if files.is_url(path):
        h.update(files.read_bytes(path))
        return h.hexdigest()
    with files.open_binary(path) as handle:
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def _shard_identity(shard: SourceShard) -> dict:
    return {"dataset": shard.dataset, "split": shard.split, "loader": shard.loader_type,
            "args": dict(shard.args), "index": shard.index}


def entry_key(task_key: str, shard: SourceShard, source_sha256: str, task, pool: tuple) -> str:
    """The key of one source file's entry. `task` is the task's `sampling.TaskSampling`: its rate and
    prompt settings decide the copies and variants; `pool` its exemplar candidates."""
    return _digest({
        "task": task_key,
        "shard": _shard_identity(shard),
        "source_sha256": source_sha256,
        "rate": float(task.rate).hex(),
        "settings": [(s, float(p).hex()) for s, p in task.settings],
        "pool": pool,
    })


def describe(shard: SourceShard) -> str:
    path = source_file(shard)
    return f"{shard.dataset} ({path})" if path else f"{shard.dataset} (shard {shard.index})"


def rows_digest(rows, with_raw: bool = False) -> str:
    """SHA-256 of what rendering reads of raw rows: each row's id and parsed fields, in order; with
    `with_raw`, also each row's raw text and error, which a dead letter carries."""
    h = hashlib.sha256()
    for row in rows:
        what = [row.row_id, row.fields, row.raw, row.error] if with_raw else [row.row_id, row.fields]
        h.update(json.dumps(what, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                            default=_plain).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def group_key(task_key: str, dataset: str, ordinal: int, task, rows, with_raw: bool = False) -> str:
    """The key of one exemplar group's entry: `rows` are the group's members as rendering gets them
    (sorted by id), `ordinal` the group's number among all tasks' groups (its setting offset), `task`
    the task's `sampling.TaskSampling` (rate and prompt settings decide the copies and their settings).
    A grouped task's rows that join no group (unreadable, or with a field problem: dead-lettered) are
    keyed as ordinal -1 `with_raw`; only a task index refers to that entry."""
    return _digest({
        "task": task_key, "group": {"dataset": dataset, "ordinal": ordinal},
        "rate": float(task.rate).hex(),
        "settings": [(s, float(p).hex()) for s, p in task.settings],
        "rows": rows_digest(rows, with_raw),
    })


def task_entry_key(task_key: str, dataset: str, task, ordinals: tuple[int, int], pool: tuple,
                   files: list[tuple[str, str]]) -> str:
    """The key of a task's index (a task with exemplar groups). `files`: (`describe`, SHA-256) of each
    of its source shards, in shard order; `ordinals` its (groups, first group's ordinal) from
    `stages.exemplars.group_ordinals`. Which group a row joins and every group's setting offset follow
    from these and the seed (in the task key), so equal keys mean equal groups."""
    return _digest({
        "task": task_key, "task_index": dataset, "files": [list(f) for f in files],
        "count": task.count, "rate": float(task.rate).hex(),
        "settings": [(s, float(p).hex()) for s, p in task.settings],
        "ordinals": list(ordinals), "pool": pool,
    })


def survey_common(plan) -> str:
    """The launcher-side part of every survey entry's key (`cache.survey`): what the survey reads
    beside a file's rows."""
    return _digest({"format": FORMAT_VERSION, "flanmix": pipelines.__version__, "code": code_fingerprint(),
                    "seed": plan.seed, "pool_size": plan.pool_size,
                    "fields": {name: dict(ds.fields) for name, ds in sorted(plan.datasets.items())}})


def survey_key(common: str, shard: SourceShard, source_sha256: str) -> str:
    """The key of one source file's survey entry."""
    return _digest({"survey": common, "shard": _shard_identity(shard), "source_sha256": source_sha256})
