"""manifest.json: what a corpus holds and how it was made. Written last, inside the pipeline, from
merged statistics; it contains no timestamps, so identical inputs give identical bytes."""
from __future__ import annotations

import json
from collections import defaultdict

from apache_beam.io.filesystems import FileSystems

import pipelines
from pipelines import counters as k
from pipelines.formats import layouts as features
from pipelines.formats.file_formats import DEFAULT_FORMATS
from pipelines.planning.plan import BuildPlan
from pipelines.planning.sampling import SamplingTable
from pipelines.records import Report
from flanmix_corpus.reader import MANIFEST_NAME
from pipelines.publish import card_stats, prompt_report

MANIFEST_VERSION = 1


def _ratio(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


def _setting_shares(task, templates) -> dict:
    """A task's expected prompt-setting distribution (uniform template choice when no settings)."""
    if task.settings:
        return dict(task.settings)
    shares: dict = defaultdict(float)
    for t in templates:
        shares[t.prompt_setting] += 1 / len(templates)
    return shares


def mixing_section(plan: BuildPlan, report: Report, table: SamplingTable, datasets: dict) -> dict:
    """Target vs realized shares per task, collection and prompt setting."""
    c = report.counts
    total = sum(d["examples"] for d in datasets.values()) or 1
    collections: dict = defaultdict(lambda: {"target_share": 0.0, "examples": 0})
    settings: dict = defaultdict(lambda: {"target_share": 0.0, "examples": 0})
    for name, task in table.tasks.items():
        d = datasets[name]
        d.update({
            "target_share": round(task.weight, 6),
            "realized_share": round(d["examples"] / total, 6),
            "target_examples": round(task.weight * table.target, 1),
            "rate": round(task.rate, 6),
            "cap": task.cap,
            "capped": bool(task.cap and task.count > task.cap),
            "downsampled": c.get(k.SAMPLED_OUT.key(name), 0),
            "upsampled": c.get(k.UPSAMPLED_COPIES.key(name), 0),
            "prompt_settings": {key[2]: c[key] for key in sorted(c) if k.TASK_SETTING.matches(key) and key[1] == name},
        })
        col = collections[task.collection]
        col["target_share"] += task.weight
        col["examples"] += d["examples"]
        for setting, p in _setting_shares(task, plan.datasets[name].templates).items():
            settings[setting]["target_share"] += task.weight * p
    for setting, value in k.by_part(c, k.SETTING).items():
        settings[setting]["examples"] = value
    for group in (collections, settings):
        for v in group.values():
            v["target_share"] = round(v["target_share"], 6)
            v["realized_share"] = round(v["examples"] / total, 6)
    k_dist = k.by_part(c, k.FEWSHOT_K)
    prompts = prompt_report.prompt_sections(plan, c, table, lambda n: _setting_shares(table.tasks[n], plan.datasets[n].templates))
    realized_tokens = sum(d["inputs_tokens"] + d["targets_tokens"] for d in datasets.values())
    return {
        "target_examples": table.target,
        "target_tokens": table.target_tokens,
        "realized_tokens": realized_tokens,
        "tokens_per_example_estimate": {k: round(v, 2) for k, v in sorted((table.tokens_per_example or {}).items())},
        "upsample": plan.upsample,
        "downsampled": sum(d.get("downsampled", 0) for d in datasets.values()),
        "upsampled": sum(d.get("upsampled", 0) for d in datasets.values()),
        "collections": dict(sorted(collections.items())),
        "prompt_settings": dict(sorted(settings.items())),
        "few_shot": {
            "exemplars_per_prompt": dict(sorted(k_dist.items(), key=lambda kv: int(kv[0]))),
            "fell_back_to_zero_shot": k.total(c, k.FEWSHOT_FELL_BACK),
            "exemplars_dropped_for_length": k.total(c, k.FEWSHOT_DROPPED),
            "exemplars_not_renderable": k.total(c, k.EXEMPLAR_RENDER_FAILED),
            "config": {"min_exemplars": plan.few_shot.min_exemplars, "max_exemplars": plan.few_shot.max_exemplars,
                       "pool_size": plan.pool_size},
            **prompts["few_shot_extra"],
        },
        "prompt_settings_per_collection": prompts["prompt_settings_per_collection"],
        "option_formats": prompts["option_formats"],
        "skipped_sources": [{"dataset": n, "reason": r} for n, r in plan.skipped],
    }


def output_description(plan: BuildPlan) -> dict:
    """format, layout, the declaration of the rows and the lengths that size them.

    packed encdec:  layout "encdec", schemas/packed_encdec.features.json, {"inputs": I, "targets": T}
    packed decoder: layout "decoder", schemas/packed_decoder.features.json, {"targets": decoder_length}
    jsonl:          layout "text", schemas/text_export.schema.json, no sequence_length (nothing is cut)
    """
    if plan.output_format == "jsonl":
        return {"format": "jsonl", "layout": "text", "feature_spec": "schemas/" + features.TEXT_EXPORT_SCHEMA_FILE,
                "sequence_length": None}
    if plan.layout == "decoder":
        lengths = {"targets": plan.decoder_length}
    else:
        lengths = {"inputs": plan.inputs_length, "targets": plan.targets_length}
    out = {"format": plan.output_format, "layout": plan.layout, "feature_spec": features.feature_spec_path(plan.layout),
           "sequence_length": lengths}
    formats = getattr(plan, "file_formats", DEFAULT_FORMATS)
    if formats != DEFAULT_FORMATS:  # `--formats`: only these were written (absent: tfrecord and parquet)
        out["formats"] = list(formats)
    return out


def packing_efficiency(plan: BuildPlan, c: dict) -> dict | None:
    """Non-pad tokens / slots per packed sequence; for decoder rows also the share of slots with loss."""
    if plan.output_format == "jsonl":
        return None
    rows = c.get(k.ROWS.key(), 0)
    if plan.layout == "decoder":
        slots = rows * plan.decoder_length
        return {"targets": _ratio(c.get(k.TARGETS_NONPAD.key(), 0), slots), "loss": _ratio(c.get(k.LOSS_TOKENS.key(), 0), slots)}
    return {
        "inputs": _ratio(c.get(k.INPUTS_NONPAD.key(), 0), rows * plan.inputs_length),
        "targets": _ratio(c.get(k.TARGETS_NONPAD.key(), 0), rows * plan.targets_length),
    }


def cache_section(c: dict) -> dict | None:
    """What `--cache` did, per source file, per few-shot task and per exemplar group (counters.CACHE_*); None for a build without a cache, so
    its manifest has no `cache` key. The one part of a manifest a warm build changes."""
    if not any(counter.matches(key) for key in c for counter in k.CACHE_COUNTERS):
        return None
    datasets: dict = defaultdict(dict)
    for key, value in c.items():
        for counter, name in PER_DATASET_CACHE:
            if counter.matches(key):
                datasets[key[1]][name] = value
    return {
        "corpus_hit": False,  # True: the whole corpus was replayed without a job (pipelines/cache/corpus.py)
        "hits": k.total(c, k.CACHE_HITS), "misses": k.total(c, k.CACHE_MISSES), "corrupt": k.total(c, k.CACHE_CORRUPT),
        "not_stored": k.total(c, k.CACHE_NOT_STORED), "uncacheable": k.total(c, k.CACHE_UNCACHEABLE),
        "task_hits": k.total(c, k.CACHE_TASK_HITS), "task_misses": k.total(c, k.CACHE_TASK_MISSES),
        "group_hits": k.total(c, k.CACHE_GROUP_HITS), "group_misses": k.total(c, k.CACHE_GROUP_MISSES),
        "datasets": {name: {n: d.get(n, 0) for _, n in PER_DATASET_CACHE} for name, d in sorted(datasets.items())},
    }


# what the cache section counts per dataset: per source file, then per task and per exemplar group (few-shot tasks)
PER_DATASET_CACHE = ((k.CACHE_HITS, "hits"), (k.CACHE_MISSES, "misses"), (k.CACHE_UNCACHEABLE, "uncacheable"),
                     (k.CACHE_TASK_HITS, "task_hits"), (k.CACHE_TASK_MISSES, "task_misses"),
                     (k.CACHE_GROUP_HITS, "group_hits"), (k.CACHE_GROUP_MISSES, "group_misses"))


def build_manifest(plan: BuildPlan, report: Report, table: SamplingTable | None = None) -> dict:
    c = report.counts
    datasets = {}
    dead_by_dataset: dict = defaultdict(dict)
    for key, value in c.items():
        if k.DEAD_LETTERS.matches(key):
            dead_by_dataset[key[1]][key[2]] = value
    for name, ds in sorted(plan.datasets.items()):
        datasets[name] = {
            "collection": ds.collection,
            "rows_read": c.get(k.READ.key(name), 0),
            "examples": c.get(k.EXAMPLES.key(name), 0),
            "inputs_tokens": c.get(k.INPUTS_TOKENS.key(name), 0),
            "targets_tokens": c.get(k.TARGETS_TOKENS.key(name), 0),
            "truncated": c.get(k.TRUNCATED.key(name), 0),
            "dead_letter": dict(sorted(dead_by_dataset.get(name, {}).items())),
            "license": ds.license,
            "languages": list(ds.languages),
            "task_categories": list(ds.task_categories),
        }
    rows = c.get(k.ROWS.key(), 0)
    data_files = [f for f in report.files if not f.path.startswith("dead_letter/")]
    dead_files = [f for f in report.files if f.path.startswith("dead_letter/")]
    mixing = mixing_section(plan, report, table, datasets) if table is not None else None
    cache = cache_section(c)
    return {
        **({"cache": cache} if cache is not None else {}),
        "mixing": mixing,
        "manifest_version": MANIFEST_VERSION,
        "flanmix_version": pipelines.__version__,
        "mixture": plan.mixture,
        "split": plan.split,
        "seed": plan.seed,
        **output_description(plan),
        "overlong_policy": plan.overlong,
        "vocabulary": {"path": plan.vocab_path, "sha256": plan.vocab_sha256, "vocab_size": plan.vocab_size,
                       "pad_id": 0, "eos_id": 1, "whitespace": plan.vocab_whitespace},
        "num_shards": plan.num_shards,
        "num_rows": rows,
        "num_examples": sum(d["examples"] for d in datasets.values()),
        "packing_efficiency": packing_efficiency(plan, c),
        "distributions": card_stats.distributions_section(plan, c),  # histograms for the data card
        "datasets": datasets,
        "templates_used": dict(sorted(k.by_part(c, k.TEMPLATE).items())),
        "dead_letter": {
            "count": sum(sum(d["dead_letter"].values()) for d in datasets.values()),
            "files": [f.path for f in dead_files],
        },
        "files": [
            {"path": f.path, "num_rows": f.num_rows, "num_bytes": f.num_bytes, "sha256": f.sha256} for f in data_files
        ],
        "provenance": {
            "catalog_entries": {name: ds.content_sha256 for name, ds in sorted(plan.datasets.items())},
            "template_families": dict(sorted(plan.template_hashes.items())),
            # a build from a snapshot (--sources): the SHA-256 of its sources.json; absent otherwise
            **({"sources_snapshot": dict(plan.sources_snapshot)} if getattr(plan, "sources_snapshot", None) else {}),
        },
    }


def write_manifest(report: Report, plan: BuildPlan, output_dir: str, table: SamplingTable | None = None) -> dict:
    manifest = build_manifest(plan, report, table)
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    with FileSystems.create(FileSystems.join(output_dir, MANIFEST_NAME)) as handle:
        handle.write(data)
    return manifest
