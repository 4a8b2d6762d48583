"""Instruction templates: Jinja strings with an inputs/targets split and metadata.

A template family is one YAML file `templates/<family>.yaml`; a catalog entry names the families it
is rendered with. Templates are user-authored code, so they run in Jinja's immutable sandbox with
`StrictUndefined`: a missing variable is an error, never an empty string.

A family can serve datasets whose raw fields differ: the catalog entry's `template_vars` maps each
family variable to a Jinja expression over the raw fields (`bind_templates` attaches them; they are
evaluated, in order, before the template renders):

    >>> t = bind_templates(["sentiment"], fams, {"text": "sentence", "options": "['negative', 'positive']",
    ...                                            "answer": "options[label]"})[0]
    >>> render(compile_template(t), {"sentence": "A delight.", "label": 1})[1]
    'positive'

    >>> fams = load_templates()
    >>> t = fams["cot_qa"].templates[0]
    >>> render(compile_template(t), {"question": "2+2?", "answer": "4", "rationale": "2 and 2 make 4."})
    ('Answer the question ... 2+2? ...', '2 and 2 make 4. So the answer is 4.')
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
from jinja2 import meta

from pipelines import resources
from pipelines.definitions import render_budget, safe_yaml, text_filters
from pipelines.planning import hashing, option_formats
from pipelines.errors import RenderError, TemplateError
from pipelines.definitions.schema_check import validate

CHOICE_SEPARATOR = "|||"
RAW = "raw"  # the whole row, for fields whose names are not identifiers: raw['label-coarse']


@dataclass(frozen=True)
class Template:
    id: str
    family: str
    shots: str  # "zero_shot" | "few_shot"
    options: bool
    cot: bool
    inputs: str
    targets: str
    answer_choices: str | None = None
    inversion: bool = False
    source_path: str = ""
    variables: tuple[tuple[str, str], ...] = ()  # (name, Jinja expression) bound from a catalog entry
    lead_once: bool = False  # few-shot form: the leading paragraphs shared with the exemplars (e.g. a
    # task definition) are stated once at the top, not before every exemplar (planning.exemplars)
    num_exemplars: int | None = None  # few-shot form: exactly this many exemplars (else the mixture's range)

    @property
    def prompt_setting(self) -> str:
        """zs_opt / zs_noopt / fs_opt / fs_noopt, the four Flan 2022 prompt settings."""
        return ("zs" if self.shots == "zero_shot" else "fs") + ("_opt" if self.options else "_noopt")


@dataclass(frozen=True)
class TemplateFamily:
    family: str
    templates: tuple[Template, ...]
    source_path: str
    content_sha256: str


class DroppedRow(Exception):
    """Raised by `drop(reason)` inside a template or template_vars expression."""


def _drop(reason: str = "dropped by a template_vars filter"):
    raise DroppedRow(str(reason))


ROW_KEY = "__row_key__"  # render-context slot: (seed, dataset, row id) of the row being rendered


@jinja2.pass_context
def _keyed_choice(context, n: int, purpose: str = "template_vars") -> int:
    """`keyed_choice(n)`: an index in [0, n) fixed by a keyed hash of (build seed, dataset, row id),
    for preprocessing that FLAN randomises per example (which dialog turn becomes the target). The
    same row always gets the same index in every build with that seed, whatever the runner or worker
    count, and all copies of an upsampled row agree. `purpose` separates independent choices of one
    row. Renders without a row key (lint, fixture checks) use (0, '', ''). n < 1 drops the row."""
    n = int(n)
    if n < 1:
        raise DroppedRow(f"keyed_choice({n}): nothing to choose from")
    seed, dataset, row_id = context.get(ROW_KEY) or (0, "", "")
    return hashing.keyed_choice(n, int(seed), f"{purpose}", str(dataset), str(row_id))


def _promptsource_part(text: str, index: int) -> str:
    """Part `index` of a rendered promptsource template split at `|||` ('' when it has none)."""
    parts = str(text).split(CHOICE_SEPARATOR)
    return parts[index] if len(parts) > index else ""


def make_environment() -> jinja2.Environment:
    """The sandbox. Besides Jinja's own: the global `drop(reason)` sends the row to the dead-letter
    output with that reason (the catalog's way to filter rows, e.g. SNLI items without a gold label);
    `keyed_choice(n)` is an index in [0, n) fixed per (seed, dataset, row id) (see `_keyed_choice`);
    the filter `promptsource_part(i)` keeps part i of a text split at `|||` (imported templates)."""
    env = render_budget.BoundedSandbox(  # ImmutableSandboxedEnvironment with time and size budgets
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )
    env.globals["drop"] = _drop
    env.globals["keyed_choice"] = _keyed_choice
    env.add_filters({"promptsource_part": _promptsource_part, **text_filters.FILTERS})
    return env


def load_family(path: Path) -> TemplateFamily:
    raw = safe_yaml.load_yaml(path.read_bytes(), str(path), TemplateError)
    validate(raw, "template_family.schema.json", path, TemplateError)
    if raw["family"] != path.stem:
        raise TemplateError(f"{path}: family {raw['family']!r} must match the file name {path.stem!r}")
    templates = tuple(
        Template(
            id=t["id"], family=raw["family"], shots=t["shots"], options=t["options"], cot=t["cot"],
            inputs=t["inputs"], targets=t["targets"], answer_choices=t.get("answer_choices"),
            inversion=t.get("inversion", False), source_path=str(path),
            lead_once=t.get("lead_once", False), num_exemplars=t.get("num_exemplars"),
        )
        for t in raw["templates"]
    )
    return TemplateFamily(raw["family"], templates, str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def load_templates(directory: str | Path | None = None) -> dict[str, TemplateFamily]:
    """Load every family under `directory` (default: templates/); template ids must be unique."""
    root = Path(directory) if directory else resources.templates_dir()
    families: dict[str, TemplateFamily] = {}
    seen: dict[str, str] = {}
    for path in sorted(root.rglob("*.yaml")):
        fam = load_family(path)
        if fam.family in families:
            raise TemplateError(f"{path}: family {fam.family!r} already defined in {families[fam.family].source_path}")
        for t in fam.templates:
            if t.id in seen:
                raise TemplateError(f"{path}: template id {t.id!r} already used in {seen[t.id]}")
            seen[t.id] = str(path)
        families[fam.family] = fam
    return families


def bind_templates(
    family_names: Sequence[str], families: Mapping[str, TemplateFamily], variables: Mapping[str, str] | None = None
) -> tuple[Template, ...]:
    """The templates of `family_names`, in order, each carrying the entry's `template_vars`."""
    bound = tuple((str(k), str(v)) for k, v in (variables or {}).items())
    out = []
    for name in family_names:
        if name not in families:
            raise TemplateError(f"template family {name!r} not found (known: {sorted(families)})")
        out.extend(dataclasses.replace(t, variables=bound) if bound else t for t in families[name].templates)
    return tuple(out)


@dataclass(frozen=True)
class CompiledTemplate:
    template: Template
    inputs: jinja2.Template
    targets: jinja2.Template
    answer_choices: jinja2.Template | None
    variables: tuple[tuple[str, Any], ...] = ()  # (name, compiled expression)


@functools.lru_cache(maxsize=16384)
def _source_refs(source: str) -> frozenset:
    return frozenset(meta.find_undeclared_variables(_default_env().parse(source)))


def _refs(env: jinja2.Environment | None, source: str) -> set[str]:
    """Undeclared names of a template source; parses once per distinct source with the default env."""
    if env is None:
        return set(_source_refs(source))
    return meta.find_undeclared_variables(env.parse(source))


def referenced_fields(template: Template, env: jinja2.Environment | None = None) -> dict[str, set[str]]:
    """Variables each part reads from the row (parsing raises TemplateError naming file and id)."""
    parts = {"inputs": template.inputs, "targets": template.targets}
    if template.answer_choices is not None:
        parts["answer_choices"] = template.answer_choices
    out = {}
    for part, src in parts.items():
        try:
            out[part] = _refs(env, src)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{template.source_path}: template {template.id!r} ({part}) does not parse: {exc.message} (line {exc.lineno})"
            ) from None
    return out


def expression_references(expression: str, env: jinja2.Environment | None = None) -> set[str]:
    """Names a Jinja expression reads; TemplateError (without a file name) if it does not parse."""
    try:
        return _refs(env, "{{ (" + expression + "\n) }}")
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression {expression!r} does not parse: {exc.message}") from None


def variable_references(template: Template, env: jinja2.Environment | None = None) -> dict[str, set[str]]:
    """Names each bound variable's expression reads (TemplateError if one does not parse)."""
    out = {}
    for name, expr in template.variables:
        try:
            out[name] = expression_references(expr, env)
        except TemplateError as exc:
            raise TemplateError(f"template_vars.{name} (bound to template {template.id!r}): {exc}") from None
    return out


_DEFAULT_ENV: jinja2.Environment | None = None


def _with_flat_globals(template: jinja2.Template) -> jinja2.Template:
    """Give a compiled template a plain dict of globals instead of Jinja's ChainMap over the
    environment's. Every render copies the globals into a new context, and copying a ChainMap runs
    in Python: it was two thirds of the time of rendering a CoT prompt. The environment's globals
    are complete before anything compiles (`make_environment`), so a snapshot is the same mapping."""
    template.globals = dict(template.globals)
    return template


@functools.lru_cache(maxsize=4096)
def _cached_string(source: str) -> jinja2.Template:
    return _with_flat_globals(_default_env().from_string(source))


@functools.lru_cache(maxsize=4096)
def _cached_expression(source: str):
    return _default_env().compile_expression(source, undefined_to_none=False)


def _default_env() -> jinja2.Environment:
    global _DEFAULT_ENV
    if _DEFAULT_ENV is None:
        _DEFAULT_ENV = make_environment()
    return _DEFAULT_ENV


def compile_template(template: Template, env: jinja2.Environment | None = None) -> CompiledTemplate:
    """Compile once, render many rows. Without `env`, compiled strings are cached and shared."""
    referenced_fields(template, env)  # parse errors surface with file and id
    variable_references(template, env)
    if env is None:
        string, expression = _cached_string, _cached_expression
    else:
        string = lambda source: _with_flat_globals(env.from_string(source))  # noqa: E731
        expression = functools.partial(env.compile_expression, undefined_to_none=False)
    return CompiledTemplate(
        template,
        string(template.inputs),
        string(template.targets),
        string(template.answer_choices) if template.answer_choices is not None else None,
        tuple((name, expression(expr)) for name, expr in template.variables),
    )


# Variables a template with `answer_choices` may read besides its dataset's fields.
CHOICE_VARIABLES = frozenset({"answer_choices", "options_block"})


def options_block(choices: Sequence[str]) -> str:
    r"""The answer choices as one block for templates to place with `{{ options_block }}`: a heading line
    and one hyphen-led line per choice. Templates that want their own layout loop over
    `answer_choices` instead.

    >>> options_block(["yes", "no"])
    'Options:\n- yes\n- no'
    """
    return "Options:\n" + "\n".join(f"- {c}" for c in choices)


def places_options_block(template: Template) -> bool:
    """True when the template's inputs place `{{ options_block }}` (so its layout can vary)."""
    return template.answer_choices is not None and "options_block" in _source_refs(template.inputs)


@render_budget.bounded()  # each row's render runs under the time and output-size budget
def render_with_choices(
    compiled: CompiledTemplate, fields: Mapping[str, Any], row_key: tuple[int, str, str] | None = None,
    option_format: option_formats.OptionFormat | None = None, marker_answer: bool = False,
) -> tuple[str, str, list[str] | None]:
    """(inputs, targets, answer choices or None). Raises RenderError (a dead-letter reason) on any
    failure, an empty result, or, for a template with answer_choices, a target that is not a choice.
    `row_key` (seed, dataset, row id) feeds `keyed_choice(n)` in template_vars.

    `option_format` (chosen by the caller's keyed hash, `planning.option_formats`) lays out
    `{{ options_block }}` instead of the default; with `marker_answer` and an enumerated format the
    target becomes the right choice's marker (e.g. "(b)"), for templates that place the block."""
    context = dict(fields)
    context.setdefault(RAW, fields)
    if row_key is not None:
        context[ROW_KEY] = row_key
    tid = compiled.template.id
    try:
        for name, expression in compiled.variables:
            value = render_budget.check_size(expression(context), f"template_vars.{name}")
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
            context[name] = value
        choices = None
        if compiled.answer_choices is not None:
            choices = [c.strip() for c in render_budget.render_template(compiled.answer_choices, context).split(CHOICE_SEPARATOR)]
            choices = [c for c in choices if c]
            context["answer_choices"] = choices
            context["options_block"] = (options_block(choices) if option_format is None
                                        else option_formats.render_block(choices, option_format))
        inputs = render_budget.render_template(compiled.inputs, context).strip()
        targets = render_budget.render_template(compiled.targets, context).strip()
    except DroppedRow as exc:
        raise RenderError(f"template {tid}: row dropped: {exc}") from None
    except render_budget.BudgetExceeded as exc:
        raise RenderError(f"template {tid} ({compiled.template.source_path}): over the render {exc}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {tid}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise RenderError(f"template {tid}: sandbox refused: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user code; any failure is a row-level dead letter
        raise RenderError(f"template {tid}: {type(exc).__name__}: {exc}") from None
    if not inputs:
        raise RenderError(f"template {tid}: rendered empty inputs")
    if not targets:
        raise RenderError(f"template {tid}: rendered empty targets")
    if choices is not None and targets not in choices:
        raise RenderError(f"template {tid}: target {targets[:80]!r} is not one of the {len(choices)} answer choices")
    if (marker_answer and option_format is not None and option_format.enumerated
            and places_options_block(compiled.template)):
        targets = option_formats.answer(option_format, choices.index(targets), len(choices))
    return inputs, targets, choices


def render(
    compiled: CompiledTemplate, fields: Mapping[str, Any], row_key: tuple[int, str, str] | None = None,
    option_format: option_formats.OptionFormat | None = None, marker_answer: bool = False,
) -> tuple[str, str]:
    """Render one row. Raises RenderError (a dead-letter reason) on any failure or empty result.
    `option_format`, `marker_answer`: see `render_with_choices`."""
    inputs, targets, _ = render_with_choices(compiled, fields, row_key, option_format, marker_answer)
    return inputs, targets
