"""The manifest's account of prompt variety (issue 14): realized vs target prompt-setting shares per
collection, exemplar reuse, few-shot styles and fallbacks, and the option formats used.

`mixing_section` (publish/manifest.py) merges `prompt_sections` into its output; everything comes
from the merged Report's counters, so it is as deterministic as the corpus."""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping

from pipelines import counters
from pipelines.planning import exemplars, option_formats


def collection_settings(table, counts: Mapping, setting_shares) -> dict:
    """collection -> setting -> {target_share, examples, realized_share}, shares within the collection.
    `setting_shares(task_name)` gives a task's target distribution over settings."""
    target: dict = defaultdict(lambda: defaultdict(float))
    weight: dict = defaultdict(float)
    for name, task in table.tasks.items():
        weight[task.collection] += task.weight
        for setting, p in setting_shares(name).items():
            target[task.collection][setting] += task.weight * p
    realized: dict = defaultdict(lambda: defaultdict(int))
    for key, value in counts.items():
        if counters.TASK_SETTING.matches(key) and key[1] in table.tasks:
            realized[table.tasks[key[1]].collection][key[2]] += value
    out = {}
    for col in sorted(set(target) | set(realized)):
        total = sum(realized[col].values())
        out[col] = {
            s: {
                "target_share": round(target[col].get(s, 0.0) / weight[col], 6) if weight[col] else 0.0,
                "examples": realized[col].get(s, 0),
                "realized_share": round(realized[col].get(s, 0) / total, 6) if total else 0.0,
            }
            for s in sorted(set(target[col]) | set(realized[col]))
        }
    return out


def prompt_sections(plan, counts: Mapping, table, setting_shares) -> dict:
    """{"prompt_settings_per_collection", "option_formats", "few_shot_extra"} for the manifest."""
    collection_of = {name: t.collection for name, t in table.tasks.items()}
    return {
        "prompt_settings_per_collection": collection_settings(table, counts, setting_shares),
        "option_formats": {**option_formats.format_counts(counts),
                           "marker_answer_share": plan.option_marker_answers},
        "few_shot_extra": {
            "exemplar_source": ("whole split, keyed groups (planning/exemplars.py)" if plan.exemplar_groups
                                else "none (no few-shot setting)"),
            "exemplar_reuse": exemplars.reuse_summary(counts, collection_of),
            "styles": dict(sorted(counters.by_part(counts, counters.FEWSHOT_STYLE).items())),
            "no_exemplar_zero_shot": counters.total(counts, counters.FEWSHOT_NO_EXEMPLAR),
            "group_size": plan.few_shot.group_size,
            "template_mix": plan.few_shot.template_mix,
        },
    }
