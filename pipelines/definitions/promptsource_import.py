"""Read a promptsource `templates.yaml` into a flanmix template family.

promptsource files use the YAML tags `!Template` / `!TemplateMetadata` and one Jinja string per
template whose rendered text splits at `|||` into inputs and targets; `answer_choices` is a Jinja
string whose rendering splits at `|||`, exactly our contract. Each template becomes a zero-shot
template of one family: `options` = the template's `choices_in_prompt`; the note keeps its origin.

    >>> family, skipped = convert(yaml_text, source="rte/templates.yaml")
    >>> family["family"], family["templates"][0]["inputs"]
    ('ps_super_glue_rte', '{{premise}} ...')

The Jinja is copied as written (split in two where that keeps both halves valid, else rendered whole
and split at `|||` by the `promptsource_part` filter); `flanmix templates lint` then checks it
against the dataset's fields.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pipelines.definitions import safe_yaml
from pipelines.errors import TemplateError
from pipelines.definitions.schema_check import validate
from pipelines.definitions.templates import make_environment


class _PromptsourceLoader(safe_yaml.Loader):
    """SafeLoader that reads promptsource's `!Template` / `!TemplateMetadata` objects as mappings."""


def _as_mapping(loader: yaml.SafeLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


_PromptsourceLoader.add_constructor("!Template", _as_mapping)
_PromptsourceLoader.add_constructor("!TemplateMetadata", _as_mapping)


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return s if s and s[0].isalnum() else f"t_{s}"


def split_jinja(source: str) -> tuple[str, str] | None:
    """Split at the first `|||` outside `{{ }}` / `{% %}` / `{# #}`; None if there is none."""
    depth_closer, i = None, 0
    while i < len(source):
        two = source[i:i + 2]
        if depth_closer is None:
            if two in ("{{", "{%", "{#"):
                depth_closer = {"{{": "}}", "{%": "%}", "{#": "#}"}[two]
                i += 2
                continue
            if source.startswith("|||", i):
                return source[:i], source[i + 3:]
        elif two == depth_closer:
            depth_closer = None
            i += 2
            continue
        i += 1
    return None


def inputs_targets(source: str) -> tuple[str, str] | None:
    """Our inputs / targets for a promptsource Jinja string: the two halves when each parses on its
    own, else the whole template rendered and split at `|||` (promptsource's own semantics) through
    the `promptsource_part` filter, for templates whose `{% if %}` spans the split."""
    parts = split_jinja(source)
    if parts is None:
        return None
    env = make_environment()
    try:
        env.parse(parts[0])
        env.parse(parts[1])
        return parts[0].strip(), parts[1].strip()
    except jinja2.TemplateSyntaxError:
        return tuple(
            f"{{% filter promptsource_part({i}) | trim %}}{source}{{% endfilter %}}" for i in (0, 1)
        )


def convert(text: str, source: str, family: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """(family dict valid against template_family.schema.json, reasons for templates left out)."""
    raw = safe_yaml.load_yaml(text, str(source), TemplateError, loader=_PromptsourceLoader)
    if not isinstance(raw, dict) or not isinstance(raw.get("templates"), dict):
        raise TemplateError(f"{source}: not a promptsource templates.yaml (no `templates:` mapping)")
    origin = "/".join(str(p) for p in (raw.get("dataset"), raw.get("subset")) if p)
    name = family or slug(f"ps_{origin or Path(source).parent.name}")
    templates, skipped, used = [], [], set()
    for key, t in sorted(raw["templates"].items(), key=lambda kv: str((kv[1] or {}).get("name", kv[0]))):
        t = t or {}
        label = t.get("name", key)
        parts = inputs_targets(str(t.get("jinja", "")))
        if parts is None or not parts[0].strip() or not parts[1].strip():
            skipped.append(f"{label!r}: no inputs ||| targets split")
            continue
        tid = base = slug(f"{name}_{label}")
        n = 2
        while tid in used:
            tid, n = f"{base}_{n}", n + 1
        used.add(tid)
        meta = t.get("metadata") or {}
        out = {
            "id": tid, "shots": "zero_shot", "options": bool(meta.get("choices_in_prompt")), "cot": False,
            "inputs": parts[0], "targets": parts[1],
            "note": f"imported from promptsource {origin or source}: template {label!r} (id {t.get('id', key)}); "
                    f"original_task={meta.get('original_task')}, metrics={meta.get('metrics')}",
        }
        if t.get("answer_choices"):
            out["answer_choices"] = str(t["answer_choices"]).strip()
        templates.append(out)
    if not templates:
        raise TemplateError(f"{source}: no template could be imported ({'; '.join(skipped) or 'empty'})")
    result = {
        "schema_version": 1, "family": name,
        "description": f"Imported from promptsource {origin or source}; wording as in the source file.",
        "templates": templates,
    }
    validate(result, "template_family.schema.json", source, TemplateError)
    return result, skipped


def import_file(path: str | Path, out_dir: str | Path, family: str | None = None, force: bool = False) -> tuple[Path, dict, list[str]]:
    """Convert `path` and write `<out_dir>/<family>.yaml`; refuses to overwrite unless `force`."""
    path = Path(path)
    result, skipped = convert(path.read_text(encoding="utf-8"), str(path), family)
    target = Path(out_dir) / f"{result['family']}.yaml"
    if target.exists() and not force:
        raise TemplateError(f"{target} exists; pass --force to replace it or --family to choose another name")
    target.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Imported by `flanmix templates import-promptsource {path.name}`; edit freely.\n"
    target.write_text(header + yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return target, result, skipped
