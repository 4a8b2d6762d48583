"""Lint on the real data: every row of a local source up to a size limit, and local paths that
do not exist.

`templates lint` used to render 3 rows of a local source and passed a dataset whose local file did
not exist (the build then skipped it, exit 0). Now, for sources whose files are local:

- a `loader.args.path` that matches nothing is a lint error (`missing_local_source`), unless the
  entry says, in `loader.args.hint`, how a user provides the file (shipped entries whose data may
  not be redistributed: Task Master, DeepMind Code Contests, DeepFix);
- when the files add up to at most `READ_ALL_BYTES`, every row is read and rendered with one of the
  dataset's templates in turn (row i with template i mod n: every template sees rows, and the cost
  stays one render per row); rows the loader cannot read and rows no template renders are lint
  errors naming the file, line or row id, and the template. Rows a template drops on purpose
  (`drop(reason)`) are not errors.
"""
from __future__ import annotations

import os

from pipelines.errors import FlanmixError, RenderError
from pipelines.definitions.fieldtypes import field_problem
from pipelines.loaders import files, get_loader, offline_ready

READ_ALL_BYTES = 8 * 1024 * 1024  # local sources up to this size are linted on every row
MAX_PROBLEMS_PER_DATASET = 20  # then one line saying how many more


def _local_pattern(entry, split: str) -> str | None:
    path = entry.loader_args.get("path")
    if not isinstance(path, str) or not files.is_local(path):
        return None
    name = entry.splits.get(split, split).split("[", 1)[0]
    return path.replace("{split}", name)


def missing_local_source(entry, split: str) -> str | None:
    """Why the entry's local source cannot be read here (None if it can or is not local)."""
    pattern = _local_pattern(entry, split)
    if pattern is None or entry.loader_args.get("hint") or offline_ready(entry.loader_type, entry.loader_args, entry.splits.get(split, split)):
        return None
    return (f"dataset {entry.name}: its local source {pattern} does not exist (a build would skip this dataset); "
            f"fix loader.args.path or provide the file")


def render_all_rows(entry, templates, split: str, problems_cls, render) -> list:
    """Problems from reading and rendering every row of a small local source (see module doc)."""
    if split not in entry.splits or not templates or _local_pattern(entry, split) is None:
        return []
    if not offline_ready(entry.loader_type, entry.loader_args, entry.splits[split]):
        return []
    loader = get_loader(entry.loader_type)
    try:
        shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
    except FlanmixError as exc:
        return [problems_cls(entry.source_path, f"dataset {entry.name}: cannot read rows to render: {exc}")]
    if sum(s.size_bytes for s in shards) > READ_ALL_BYTES:
        return []
    problems, index, more = [], 0, 0

    def add(message):
        nonlocal more
        if len(problems) < MAX_PROBLEMS_PER_DATASET:
            problems.append(problems_cls(entry.source_path, message))
        else:
            more += 1

    for shard in shards:
        source = os.path.basename(str(shard.args.get("path", "")))
        try:
            rows = list(loader.read(shard))
        except FlanmixError as exc:
            add(f"dataset {entry.name}: {source}: {exc}")
            continue
        for row in rows:
            if row.error is not None:
                add(f"dataset {entry.name} row {row.row_id}: {row.error}")
                continue
            issue = field_problem(row.fields, entry.fields)
            if issue is not None:
                add(f"dataset {entry.name} row {row.row_id} ({source}): {issue}")
                continue
            template = templates[index % len(templates)]
            index += 1
            try:
                render(template, row.fields)
            except RenderError as exc:
                if ": row dropped: " not in str(exc):
                    add(f"dataset {entry.name} row {row.row_id} ({source}): {exc}")
    if more:
        problems.append(problems_cls(entry.source_path, f"dataset {entry.name}: ... and {more} more row problem(s)"))
    return problems
