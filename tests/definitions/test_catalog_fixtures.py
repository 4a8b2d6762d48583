"""Every fixture row that states what it must become is rendered through its entry and every template.

A fixture's `expect` (schemas/catalog_entry.schema.json) is written by hand beside a row in the source's
real raw format (TFDS / HF field names, types and value conventions), so a wrong label convention, a
reversed translation direction or a missing preprocessing step shows up here as a wrong target."""
from __future__ import annotations

import pytest

from pipelines.definitions.catalog import fixture_rows, load_catalog
from pipelines.errors import RenderError
from pipelines.definitions.templates import bind_templates, compile_template, load_templates, render

CHECKED = ("flan2021", "cot", "dialog")
CATALOG = load_catalog()
FAMILIES = load_templates()


def _cases():
    for entry in CATALOG:
        for i, (fixture, row) in enumerate(zip(entry.fixtures, fixture_rows(entry))):
            if "expect" in fixture:
                yield pytest.param(entry, fixture["expect"], row, id=f"{entry.name}-{i}")


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("entry,expect,row", list(_cases()))
def test_fixture_renders_what_it_expects(entry, expect, row):
    templates = [t for t in bind_templates(entry.templates, FAMILIES, entry.template_vars) if t.shots == "zero_shot"]
    assert templates, entry.name
    for template in templates:
        compiled = compile_template(template)
        if "dropped" in expect:
            with pytest.raises(RenderError, match="row dropped") as info:
                render(compiled, row.fields)
            assert expect["dropped"] in str(info.value), (template.id, str(info.value))
            continue
        inputs, targets = render(compiled, row.fields)
        where = f"{entry.name} / {template.id} / {row.row_id}"
        if template.inversion:
            for fact in expect.get("inversion_inputs_contain", [expect["target"]]):
                assert _norm(fact) in _norm(inputs), f"{where}: inverted prompt lacks {fact!r}:\n{inputs}"
            continue
        if template.cot:
            assert _norm(expect["target"]) in _norm(targets), f"{where}: {targets!r}"
            if "rationale" in expect:
                assert _norm(expect["rationale"]) in _norm(targets), f"{where}: {targets!r}"
        else:
            assert _norm(targets) == _norm(expect["target"]), f"{where}: target {targets!r}"
        for fact in expect.get("inputs_contain", []):
            assert _norm(fact) in _norm(inputs), f"{where}: inputs lack {fact!r}:\n{inputs}"


@pytest.mark.parametrize("entry", [e for e in CATALOG if e.collection in CHECKED], ids=lambda e: e.name)
def test_every_flan_entry_states_what_its_rows_become_and_has_flans_prompt_variety(entry):
    """Issue 13/14's floor for Flan 2021, CoT and dialog: a fixture with `expect`, at least 10 zero-shot
    templates (FLAN's count), and for a dataset with answer choices at least 5 forward templates that
    show them and 5 that do not, so every prompt setting gets real choices."""
    assert any("expect" in f for f in entry.fixtures), f"{entry.name}: no fixture states what it must render to"
    templates = [t for t in bind_templates(entry.templates, FAMILIES, entry.template_vars) if t.shots == "zero_shot"]
    assert len(templates) >= 10, f"{entry.name}: {len(templates)} zero-shot templates"
    if "options" in entry.template_vars:
        forward = [t for t in templates if not t.inversion]
        assert sum(t.options for t in forward) >= 5 and sum(not t.options for t in forward) >= 5, entry.name
