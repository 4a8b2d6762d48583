"""Checks run before any job starts (and by `flanmix templates lint`).

Static checks need only the files: every family a dataset names exists, every template parses and
references only the dataset's declared fields. Render checks also read a few real rows.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Mapping

from pipelines.catalog import Catalog, DatasetEntry
from pipelines.errors import FlanmixError, RenderError, TemplateError
from pipelines.fieldtypes import field_problem
from pipelines.loaders import get_loader
from pipelines.templates import TemplateFamily, compile_template, make_environment, referenced_fields, render


@dataclass(frozen=True)
class Problem:
    where: str  # file path
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def lint_static(entries: Iterable[DatasetEntry], families: Mapping[str, TemplateFamily]) -> list[Problem]:
    env = make_environment()
    problems: list[Problem] = []
    for entry in entries:
        for fam_name in entry.templates:
            fam = families.get(fam_name)
            if fam is None:
                problems.append(Problem(entry.source_path, f"dataset {entry.name}: template family {fam_name!r} not found in templates/"))
                continue
            for t in fam.templates:
                try:
                    refs = referenced_fields(t, env)
                except TemplateError as exc:
                    problems.append(Problem(t.source_path, str(exc).split(": ", 1)[1]))
                    continue
                allowed = set(entry.fields) | ({"answer_choices"} if t.answer_choices is not None else set())
                for part, names in refs.items():
                    for name in sorted(names - allowed):
                        problems.append(Problem(
                            t.source_path,
                            f"template {t.id!r} ({part}) references field {name!r}, which dataset {entry.name} "
                            f"does not declare (declared: {sorted(entry.fields)}; see {entry.source_path})",
                        ))
    return problems


def lint_render(entry: DatasetEntry, families: Mapping[str, TemplateFamily], split: str, rows: int = 3) -> list[Problem]:
    """Render every template of `entry` on its first `rows` rows."""
    loader = get_loader(entry.loader_type)
    problems: list[Problem] = []
    try:
        shards = loader.plan(entry.name, split, entry.splits[split], entry.loader_args)
        sample = list(itertools.islice((r for s in shards for r in loader.read(s)), rows))
    except FlanmixError as exc:
        return [Problem(entry.source_path, f"dataset {entry.name}: cannot read rows to render: {exc}")]
    for fam_name in entry.templates:
        for t in families[fam_name].templates:
            compiled = compile_template(t)
            for row in sample:
                if row.error:
                    continue
                if (issue := field_problem(row.fields, entry.fields)) is not None:
                    problems.append(Problem(entry.source_path, f"dataset {entry.name} row {row.row_id}: {issue}"))
                    continue
                try:
                    inputs, targets = render(compiled, row.fields)
                except RenderError as exc:
                    problems.append(Problem(t.source_path, f"dataset {entry.name} row {row.row_id}: {exc}"))
                    continue
                if t.answer_choices is not None:
                    choices = [c.strip() for c in compiled.answer_choices.render(dict(row.fields)).split("|||")]
                    if targets not in choices:
                        problems.append(Problem(t.source_path, f"template {t.id!r}, dataset {entry.name} row {row.row_id}: target {targets!r} is not one of the options {choices}"))
    return problems


def lint_catalog(catalog: Catalog, families: Mapping[str, TemplateFamily], split: str = "train", render_rows: int = 3) -> list[Problem]:
    problems = lint_static(catalog, families)
    if problems or render_rows <= 0:
        return problems
    for entry in catalog:
        if split in entry.splits:
            problems.extend(lint_render(entry, families, split, render_rows))
    return problems
