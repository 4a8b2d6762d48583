"""`flanmix templates preview DATASET`: a dataset's first rows rendered through its templates, the
way a build renders them (dead letters shown with their reason)."""
from __future__ import annotations

import itertools

from pipelines.errors import FlanmixError


def preview_rows(entry, n: int, use_fixtures: bool):
    """(rows, note): the first `n` source rows, or the entry's fixture rows when the source cannot be
    read here (or `use_fixtures`)."""
    from pipelines.definitions.catalog import fixture_rows
    from pipelines.loaders import get_loader

    if not use_fixtures:
        split = next(iter(entry.splits))
        loader = get_loader(entry.loader_type)
        try:
            shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
            return list(itertools.islice((r for s in shards for r in loader.read(s)), n)), None
        except FlanmixError as exc:
            note = f"source unavailable ({exc}); showing the entry's fixture rows instead"
            if entry.sample_loader_type:  # the shipped sample: real rows, just not all of them
                sample = get_loader(entry.sample_loader_type)
                try:
                    shards = sample.plan(entry.name, split, entry.splits[split], entry.sample_loader_args)
                    rows = list(itertools.islice((r for s in shards for r in sample.read(s)), n))
                    return rows, f"full source unavailable ({str(exc).splitlines()[0]}); showing the shipped sample instead"
                except FlanmixError:
                    pass
    else:
        note = "showing the entry's fixture rows (--fixtures)"
    rows = fixture_rows(entry)[:n]
    if not rows:
        raise FlanmixError(f"dataset {entry.name}: source unavailable and the entry has no fixture rows")
    return rows, note


def preview(catalog, families, dataset: str, n: int, template_id: str | None, use_fixtures: bool = False) -> int:
    from pipelines.errors import RenderError
    from pipelines.definitions.fieldtypes import field_problem
    from pipelines.definitions.templates import bind_templates, compile_template, render

    entry = catalog[dataset]
    templates = list(bind_templates(entry.templates, families, entry.template_vars))
    if template_id:
        templates = [t for t in templates if t.id == template_id]
        if not templates:
            raise FlanmixError(f"dataset {dataset} has no template {template_id!r}")
    rows, note = preview_rows(entry, n, use_fixtures)
    if note:
        print(f"[{dataset}] {note}\n")
    count = n if note else len(rows)  # fixture rows are few: cycle them so n templates are shown
    for i in range(count):
        row, t = rows[i % len(rows)], templates[i % len(templates)]
        print(f"=== {dataset} row {row.row_id} | template {t.id} ({t.prompt_setting}{', cot' if t.cot else ''}{', inversion' if t.inversion else ''})")
        problem = row.error or field_problem(row.fields, entry.fields)
        if problem:
            print(f"[dead letter] {problem}\n")
            continue
        try:
            inputs, targets = render(compile_template(t), row.fields, (0, dataset, row.row_id))
        except RenderError as exc:
            print(f"[dead letter] {exc}\n")
            continue
        print(f"--- inputs\n{inputs}\n--- targets\n{targets}\n")
    return 0


def preview_setting_cmd(catalog, families, args) -> int:
    """`templates preview NAME --setting S`: the rows stand in for one exemplar group (cli.prompt_preview)."""
    from pipelines.cli.prompt_preview import PREVIEW_ROWS, preview_setting
    from pipelines.definitions.fieldtypes import field_problem
    from pipelines.definitions.templates import bind_templates

    entry = catalog[args.dataset]
    templates = [t for t in bind_templates(entry.templates, families, entry.template_vars)
                 if not args.template or t.id == args.template]
    if not templates:
        raise FlanmixError(f"dataset {args.dataset} has no template {args.template!r}")
    rows, note = preview_rows(entry, max(args.n, PREVIEW_ROWS), args.fixtures)
    if note:
        print(f"[{args.dataset}] {note}\n")
    rows = [r for r in rows if r.error is None and field_problem(r.fields, entry.fields) is None]
    return preview_setting(entry, templates, rows, args.setting, args.n)
