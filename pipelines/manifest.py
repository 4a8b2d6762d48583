"""manifest.json: what a corpus holds and how it was made. Written last, inside the pipeline, from
merged statistics; it contains no timestamps, so identical inputs give identical bytes."""
from __future__ import annotations

import json
from collections import defaultdict

from apache_beam.io.filesystems import FileSystems

import pipelines
from pipelines.plan import BuildPlan
from pipelines.stats import Report

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def _ratio(num: int, den: int) -> float:
    return round(num / den, 6) if den else 0.0


def build_manifest(plan: BuildPlan, report: Report) -> dict:
    c = report.counts
    datasets = {}
    dead_by_dataset: dict = defaultdict(dict)
    for key, value in c.items():
        if key[0] == "dead_letter":
            dead_by_dataset[key[1]][key[2]] = value
    for name, ds in sorted(plan.datasets.items()):
        datasets[name] = {
            "collection": ds.collection,
            "rows_read": c.get(("read", name), 0),
            "examples": c.get(("examples", name), 0),
            "inputs_tokens": c.get(("inputs_tokens", name), 0),
            "targets_tokens": c.get(("targets_tokens", name), 0),
            "truncated": c.get(("truncated", name), 0),
            "dead_letter": dict(sorted(dead_by_dataset.get(name, {}).items())),
        }
    rows = c.get(("rows",), 0)
    in_nonpad, tg_nonpad = c.get(("inputs_nonpad",), 0), c.get(("targets_nonpad",), 0)
    data_files = [f for f in report.files if not f.path.startswith("dead_letter/")]
    dead_files = [f for f in report.files if f.path.startswith("dead_letter/")]
    return {
        "manifest_version": MANIFEST_VERSION,
        "flanmix_version": pipelines.__version__,
        "mixture": plan.mixture,
        "split": plan.split,
        "seed": plan.seed,
        "layout": plan.layout,
        "feature_spec": "schemas/packed_encdec.features.json",
        "sequence_length": {"inputs": plan.inputs_length, "targets": plan.targets_length},
        "overlong_policy": plan.overlong,
        "vocabulary": {"path": plan.vocab_path, "sha256": plan.vocab_sha256, "vocab_size": plan.vocab_size,
                       "pad_id": 0, "eos_id": 1},
        "num_shards": plan.num_shards,
        "num_rows": rows,
        "num_examples": sum(d["examples"] for d in datasets.values()),
        "packing_efficiency": {
            "inputs": _ratio(in_nonpad, rows * plan.inputs_length),
            "targets": _ratio(tg_nonpad, rows * plan.targets_length),
        },
        "datasets": datasets,
        "templates_used": {k[1]: v for k, v in sorted(c.items()) if k[0] == "template"},
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
        },
    }


def write_manifest(report: Report, plan: BuildPlan, output_dir: str) -> dict:
    manifest = build_manifest(plan, report)
    data = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    with FileSystems.create(FileSystems.join(output_dir, MANIFEST_NAME)) as handle:
        handle.write(data)
    return manifest


def read_manifest(output_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(output_dir, MANIFEST_NAME)) as handle:
        return json.loads(handle.read().decode("utf-8"))
