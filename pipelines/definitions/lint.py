"""Checks run before any job starts (and by `flanmix templates lint`).

Static checks need only the files: every family a dataset names exists, every template and every
`template_vars` expression parses and reads only the dataset's declared fields (or variables bound
before it). Render checks render every template of a dataset on its fixture rows (and on a few real
rows when its source is readable here without network): inputs and targets must be non-empty, and
for templates with answer choices the target must be one of them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Mapping

from pipelines.definitions import lint_sources
from pipelines.definitions.catalog import Catalog, DatasetEntry, fixture_rows
from pipelines.errors import FlanmixError, RenderError, TemplateError
from pipelines.definitions.fieldtypes import field_problem
from pipelines.loaders import get_loader, offline_ready
from pipelines.definitions.templates import (
    CHOICE_VARIABLES, RAW, Template, TemplateFamily, bind_templates, compile_template, expression_references,
    referenced_fields, render_with_choices,
)


@dataclass(frozen=True)
class Problem:
    where: str  # file path
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def _lint_variables(entry: DatasetEntry, env) -> list[Problem]:
    problems, defined = [], set(entry.fields) | {RAW}
    for name, expr in entry.template_vars.items():
        try:
            refs = expression_references(expr, env)
        except TemplateError as exc:
            problems.append(Problem(entry.source_path, f"dataset {entry.name}: template_vars.{name}: {exc}"))
            continue
        for ref in sorted(refs - defined):
            problems.append(Problem(
                entry.source_path,
                f"dataset {entry.name}: template_vars.{name} reads {ref!r}, which is neither a declared field "
                f"({sorted(entry.fields)}) nor a variable defined above it",
            ))
        defined.add(name)
    return problems


def lint_static(entries: Iterable[DatasetEntry], families: Mapping[str, TemplateFamily]) -> list[Problem]:
    env = None  # the shared default sandbox: each distinct source is parsed once
    problems: list[Problem] = []
    refs_cache: dict[str, dict[str, set[str]] | None] = {}
    for entry in entries:
        problems.extend(_lint_variables(entry, env))
        declared = set(entry.fields) | set(entry.template_vars)
        for fam_name in entry.templates:
            fam = families.get(fam_name)
            if fam is None:
                problems.append(Problem(entry.source_path, f"dataset {entry.name}: template family {fam_name!r} not found in templates/"))
                continue
            for t in fam.templates:
                if t.id not in refs_cache:
                    try:
                        refs_cache[t.id] = referenced_fields(t, env)
                    except TemplateError as exc:
                        refs_cache[t.id] = None
                        problems.append(Problem(t.source_path, str(exc).split(": ", 1)[1]))
                refs = refs_cache[t.id]
                if refs is None:
                    continue
                allowed = declared | (CHOICE_VARIABLES if t.answer_choices is not None else set())
                for part, names in refs.items():
                    for name in sorted(names - allowed):
                        problems.append(Problem(
                            t.source_path,
                            f"template {t.id!r} ({part}) references field {name!r}, which dataset {entry.name} "
                            f"does not declare (declared: {sorted(declared)}; see {entry.source_path})",
                        ))
    return problems


def sample_rows(entry: DatasetEntry, split: str, rows: int, read_source: bool = True):
    """(fixture rows + up to `rows` real rows when the source is readable offline, problems)."""
    # Fixture rows that state they must be dropped (expect.dropped) are checked by the fixture tests,
    # not rendered here: their drop is the expected outcome, not a problem.
    sample = [row for f, row in zip(entry.fixtures, fixture_rows(entry)) if "dropped" not in (f.get("expect") or {})]
    problems = []
    missing = lint_sources.missing_local_source(entry, split) if read_source else None
    if missing:
        problems.append(Problem(entry.source_path, missing))
    source = (entry.loader_type, entry.loader_args)
    if entry.sample_loader_type and not offline_ready(*source, entry.splits[split]):
        source = (entry.sample_loader_type, entry.sample_loader_args)  # the shipped sample: real rows too
    if read_source and rows > 0 and offline_ready(*source, entry.splits[split]):
        loader = get_loader(source[0])
        try:
            shards = loader.plan(entry.name, split, entry.splits[split], source[1])
            sample += list(itertools.islice((r for s in shards for r in loader.read(s)), rows))
        except FlanmixError as exc:
            problems.append(Problem(entry.source_path, f"dataset {entry.name}: cannot read rows to render: {exc}"))
    elif not sample:
        problems.append(Problem(
            entry.source_path,
            f"dataset {entry.name}: no fixture rows and its source is not readable offline; add `fixtures:` "
            f"(rows in the loader's raw-field format) so its templates can be checked",
        ))
    return sample, problems


def lint_render(
    entry: DatasetEntry, families: Mapping[str, TemplateFamily], split: str, rows: int = 3, read_source: bool = True
) -> list[Problem]:
    """Render every template of `entry` on its fixture rows and its first `rows` readable rows."""
    sample, problems = sample_rows(entry, split, rows, read_source)
    # Fixture rows that are written to be dropped (`expect: {dropped: ...}`, e.g. snli's label -1) are
    # checked by tests/test_catalog_fixtures.py to drop with that reason; rendering them here would only
    # report the intended drop as a problem.
    meant_to_drop = {
        str(f.get("row_id") or f"fixture:{i}") for i, f in enumerate(entry.fixtures) if "dropped" in f.get("expect", {})
    }
    checked = []
    for row in sample:
        if row.error or row.row_id in meant_to_drop:
            continue
        issue = field_problem(row.fields, entry.fields)
        if issue is not None:
            problems.append(Problem(entry.source_path, f"dataset {entry.name} row {row.row_id}: {issue}"))
            continue
        checked.append(row)
    templates: tuple[Template, ...] = bind_templates(entry.templates, families, entry.template_vars)
    # Fixture rows written to be dropped (`expect: {dropped: ...}`) must be dropped, not rendered.
    meant_to_drop = {
        str(f.get("row_id") or f"fixture:{i}"): f["expect"]["dropped"]
        for i, f in enumerate(entry.fixtures) if "dropped" in (f.get("expect") or {})
    }
    for t in templates:
        compiled = compile_template(t)
        for row in checked:
            try:
                render_with_choices(compiled, row.fields, (0, entry.name, row.row_id))
            except RenderError as exc:
                if row.row_id in meant_to_drop and "row dropped" in str(exc):
                    continue
                problems.append(Problem(t.source_path, f"dataset {entry.name} row {row.row_id}: {exc}"))
            else:
                if row.row_id in meant_to_drop:
                    problems.append(Problem(t.source_path, f"dataset {entry.name} row {row.row_id}: expected to be dropped ({meant_to_drop[row.row_id]}) but rendered"))
    if read_source and rows > 0:  # every row of a small local source, one template each
        problems.extend(lint_sources.render_all_rows(
            entry, templates, split, Problem, lambda t, fields: render_with_choices(compile_template(t), fields)))
    return problems


def lint_catalog(
    catalog: Catalog, families: Mapping[str, TemplateFamily], split: str = "train", render_rows: int = 3,
    read_source: bool = True,
) -> list[Problem]:
    """Static checks for every entry, then (render_rows > 0) render checks for entries with `split`."""
    problems = lint_static(catalog, families)
    if problems or render_rows <= 0:
        return problems
    for entry in catalog:
        if split in entry.splits:
            problems.extend(lint_render(entry, families, split, render_rows, read_source))
    return problems
