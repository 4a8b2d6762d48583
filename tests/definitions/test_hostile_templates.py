"""Issue 16: templates and YAML are bounded. Each hostile input is the exact text from the report;
each test asserts the message (naming the template or file and the limit) and that nothing else is lost."""
from __future__ import annotations

import json
import time

import pytest

from pipelines.definitions import render_budget
from pipelines.definitions.catalog import load_catalog
from pipelines.errors import CatalogError, RenderError, TemplateError
from pipelines.definitions.render_budget import RenderBudget
from pipelines.definitions.templates import Template, compile_template, load_family, render
from pipelines.cli import main
from pipelines.definitions.safe_yaml import load_yaml

from conftest import build_corpus, write
from test_bad_input import GOOD_ROWS, toy_project

SMALL = RenderBudget(max_operations=20_000, seconds=5.0, max_chars=10_000)


def _render(source: str, budget: RenderBudget = SMALL, fields=None):
    t = Template(id="hostile", family="f", shots="zero_shot", options=False, cot=False, inputs=source,
                 targets="t", source_path="templates/f.yaml")
    render_budget.configure(budget)
    try:
        return render(compile_template(t), fields or {"q": "hi"})
    finally:
        render_budget.configure(None)


@pytest.mark.parametrize("source, message", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
     "more than 20000 template operations (render_max_operations)"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}x",
     "more than 20000 template operations (render_max_operations)"),
    ("{{ 'a' * 10**9 }}", "'a' * 1000000000 would make 1000000000 characters (limit 10000)"),
    ("{{ [1] * 10**8 }}", "list of 1 * 100000000 would make 100000000 characters (limit 10000)"),
    ("{{ 'a'|center(1000000000) }}", "center(1000000000) would make 1000000000 characters (limit 10000)"),
    ("{{ '%1000000000s'|format(1) }}", "a format width of 1000000000 would make 1000000000 characters"),
    ("{{ '{:>1000000000}'.format(1) }}", "a format width of 1000000000 would make 1000000000 characters"),
    ("{{ lipsum(1000000) }}", "lipsum(1000000) would make 1000000000 characters"),
    ("{{ ('a'*1000)|replace('a', 'a'*1000) }}", "replace() would make 1000000 characters (limit 10000)"),
    ("{% set ns = namespace(x='ab') %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}",
     "attribute 'x' holds 16384 characters or items (limit 10000)"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "more than 10000 characters of output (render_max_chars)"),
    ("{{ 7 ** 100000 }}", "7 ** 100000 has about 280735 bits (limit 4096)"),
])
def test_hostile_template_is_refused_quickly_naming_template_and_limit(source, message):
    start = time.perf_counter()
    with pytest.raises(RenderError) as info:
        _render(source)
    assert time.perf_counter() - start < 2.0
    assert str(info.value).startswith("template hostile (templates/f.yaml): over the render ")
    assert message in str(info.value)


def test_normal_template_renders_within_the_small_budget():
    assert _render("{{ q }}: {% for i in range(3) %}{{ i }}{% endfor %} {{ 'ab' * 3 }} {{ '%5s'|format('x') }}") == (
        "hi: 012 ababab     x", "t")


def test_wall_clock_backstop_is_checked_between_counted_steps():
    with pytest.raises(RenderError, match=r"rendering took more than 0.01 s \(render_seconds\)"):
        _render("{% for i in range(100000) %}{{ i }}{% endfor %}",
                RenderBudget(max_operations=10**9, seconds=0.01, max_chars=10**9))


def test_budget_limits_must_be_positive_and_finite(capsys):
    with pytest.raises(ValueError, match="max_chars must be a positive finite number"):
        RenderBudget(max_chars=0)
    assert main(["templates", "lint", "--no-source", "--render_seconds", "nan"]) == 2
    assert "--render_seconds must be a positive finite number (got nan)" in capsys.readouterr().err


def test_lint_reports_a_template_over_budget(tmp_path, capsys):
    cat_dir, tpl_dir, _ = toy_project(tmp_path, GOOD_ROWS, targets="{{ 'a' * 10**9 }}")
    assert main(["--catalog", str(cat_dir), "--templates", str(tpl_dir), "templates", "lint", "--render_max_chars", "5000"]) == 1
    err = capsys.readouterr().err
    assert "template toy_plain" in err and "'a' * 1000000000 would make 1000000000 characters (limit 5000)" in err


def test_build_dead_letters_rows_over_budget_and_goes_on(tmp_path, vocab):
    """Two rows, a template that would allocate 1 GB each: both are dead letters naming the template
    and the limit; the build finishes (before the budget it died with std::bad_alloc)."""
    cat_dir, tpl_dir, mixture = toy_project(
        tmp_path, GOOD_ROWS, targets="{% if answer == '4' %}{{ 'a' * 10**9 }}{% else %}{{ answer }}{% endif %}")
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates_dir(tpl_dir), vocab, mixture=str(mixture), num_shards=1,
                 render_budget=RenderBudget(max_chars=5000))
    records = [json.loads(line) for line in (out / "dead_letter" / "dead_letter-00000-of-00001.jsonl").read_text().splitlines()]
    assert [(r["row_id"], r["stage"]) for r in records] == [("train:1", "render")]
    assert "template toy_plain" in records[0]["reason"] and "(limit 5000)" in records[0]["reason"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["datasets"]["toy_qa"]["rows_read"] == 2 and manifest["datasets"]["toy_qa"]["examples"] == 1


def load_templates_dir(path):
    from pipelines.definitions.templates import load_templates

    return load_templates(path)


# --- YAML ------------------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
)


def test_alias_bomb_in_an_entry_is_refused_in_milliseconds_naming_the_file(tmp_path):
    write(tmp_path / "cat" / "bomb.yaml", "description: hello\n" + ALIAS_BOMB.replace("\na", "\nx_a") + "\n")
    start = time.perf_counter()
    with pytest.raises(CatalogError, match=r"bomb\.yaml: line \d+: expands to more than 200000 nodes"):
        load_catalog(tmp_path / "cat")
    assert time.perf_counter() - start < 1.0


def test_alias_bomb_under_loader_args_is_refused_too(tmp_path):
    text = "loader:\n  type: jsonl\n  args:\n" + "".join(f"    {line}\n" for line in ALIAS_BOMB.splitlines())
    with pytest.raises(CatalogError, match="expands to more than 200000 nodes or 16777216 characters"):
        load_yaml(text, "entry.yaml")


def test_small_aliases_stay_allowed():
    assert load_yaml("a: &id001 text\nb: [*id001, *id001]\n", "x.yaml") == {"a": "text", "b": ["text", "text"]}


def test_duplicate_key_is_an_error_naming_file_and_lines(tmp_path):
    path = write(tmp_path / "templates" / "dup.yaml", "schema_version: 1\nfamily: dup\nfamily: dup\ntemplates: []\n")
    with pytest.raises(TemplateError, match=r"dup\.yaml: line 3: not valid YAML: duplicate key 'family' \(first at line 2\)"):
        load_family(path)


def test_deep_nesting_is_refused_without_crashing_the_interpreter(tmp_path):
    # 100k nested brackets: libyaml's composer recursed in C and the process died (SIGSEGV).
    with pytest.raises(CatalogError, match=r"m\.yaml: line 1: nested deeper than 64 levels"):
        load_yaml("[" * 100_000 + "]" * 100_000, "m.yaml")


def test_mixture_with_a_duplicate_key_names_its_file(tmp_path):
    from pipelines.definitions.mixtures import load_mixture

    path = write(tmp_path / "m.yaml", "schema_version: 1\nname: m\nname: n\nmembers: [{dataset: x}]\n")
    with pytest.raises(CatalogError, match=r"m\.yaml: line 3: not valid YAML: duplicate key 'name'"):
        load_mixture(path)


def test_python_tags_stay_refused():
    with pytest.raises(CatalogError, match=r"x\.yaml: line 1: not valid YAML: could not determine a constructor"):
        load_yaml("a: !!python/object/apply:os.system [echo]\n", "x.yaml")
