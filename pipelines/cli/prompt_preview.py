"""`flanmix templates preview NAME --setting zs_opt|zs_noopt|fs_opt|fs_noopt`: what the build makes
for one prompt setting, through the build's own decisions (planning.exemplars, planning.option_formats).

The preview's rows (the source's first rows, or the entry's fixture rows) stand in for one exemplar
group: each query gets a template of the setting, a keyed option format (and marker answer), and in
a few-shot setting its exemplars from the other rows, in one of the two styles, with the task's
separator and the definition-once lead of `lead_once` templates, exactly as a build would assemble
them (before the length budget, which needs the vocabulary)."""
from __future__ import annotations

from pipelines.definitions.mixtures import PROMPT_SETTINGS, FewShotConfig
from pipelines.errors import FlanmixError, RenderError
from pipelines.planning import exemplars, option_formats
from pipelines.planning.hashing import keyed_hash
from pipelines.planning.sampling import templates_for_setting

PREVIEW_ROWS = 16  # rows read to serve as exemplars


def preview_setting(entry, templates, rows, setting: str, n: int, seed: int = 0,
                    few_shot: FewShotConfig | None = None, marker_share: float = option_formats.DEFAULT_MARKER_ANSWERS,
                    out=print) -> int:
    """Print `n` prompts of `setting` for `entry` from `rows` (valid RawRows). Returns 0, or raises
    FlanmixError naming the dataset when no template serves the setting."""
    if setting not in PROMPT_SETTINGS:
        raise FlanmixError(f"--setting {setting!r}: expected one of {', '.join(PROMPT_SETTINGS)}")
    few_shot = few_shot or FewShotConfig()
    dataset = entry.name
    if not templates_for_setting(templates, setting, len(rows)):
        have = sorted({t.prompt_setting for t in templates})
        raise FlanmixError(f"dataset {dataset}: no template serves {setting} (its templates give {', '.join(have)};"
                           f" few-shot forms need at least 2 rows, {len(rows)} here)")
    order = sorted(range(len(rows)), key=lambda i: (keyed_hash(seed, "exemplar_order", dataset, rows[i].row_id), rows[i].row_id))
    position = {i: p for p, i in enumerate(order)}
    sep = exemplars.separator(seed, dataset)
    from pipelines.definitions.templates import compile_template, places_options_block

    compiled = {t.id: compile_template(t) for t in templates}
    for q in range(min(n, len(rows))):
        row = rows[q]
        key = row.row_id
        choice = exemplars.choose_copy(templates, setting, len(rows), position[q], 0, few_shot, seed, dataset, key)
        choice = exemplars.CopyChoice(choice.template, choice.setting, tuple(order[p] for p in choice.exemplars),
                                      choice.shot_templates, choice.style)
        fmt = option_formats.pick_format(seed, dataset, key)
        marker = option_formats.marker_answer(seed, dataset, key, fmt, marker_share)
        t = choice.template
        notes = [choice.setting, choice.style]
        if places_options_block(t):
            notes.append(f"options {fmt.name}{', marker answer' if marker and fmt.enumerated else ''}")
        if choice.exemplars:
            notes.append(f"{len(choice.exemplars)} exemplar(s): {', '.join(rows[r].row_id for r in choice.exemplars)}")
        out(f"=== {dataset} row {row.row_id} | template {t.id} ({'; '.join(notes)})")
        try:
            inputs, targets, prompt, failed = exemplars.render_copy(compiled, choice, rows, q, few_shot, sep, fmt, marker,
                                                                     seed, dataset)
        except RenderError as exc:
            out(f"[dead letter] {exc}\n")
            continue
        if failed:
            out(f"[{failed} exemplar(s) could not be rendered and are left out]")
        if prompt:
            inputs = prompt.text(len(prompt.shots))
        out(f"--- inputs\n{inputs}\n--- targets\n{targets}\n")
    return 0
