"""A small real build for the runner, publishing and Dataflow tests: three shipped datasets (two CoT,
one NIV2) at lengths 256/64, so a build takes a few seconds and packing still has work to do."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from pipelines.definitions.mixtures import load_mixture
from pipelines.planning.plan import BuildOptions, make_plan

SMALL_MIXTURE = """\
schema_version: 1
name: small
description: Three shipped datasets for runner and publishing tests.
seed: 0
split: train
data: samples
sequence_length: {inputs: 256, targets: 64}
members:
  - dataset: cot_gsm8k
  - dataset: cot_creak
  - dataset: task1146_country_capital
"""
SMALL_EXAMPLES = 300 + 300 + 8


def small_mixture(directory: Path) -> Path:
    path = directory / "small.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SMALL_MIXTURE, encoding="utf-8")
    return path


def small_plan(directory: Path, catalog, families, vocab, **kwargs):
    return make_plan(load_mixture(small_mixture(directory)), catalog, families, vocab, BuildOptions(**{"num_shards": 2, **kwargs}))


def digest_tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under a local directory."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def card_listing(manifest: dict) -> set[str]:
    """The data card's files a build publishes beside the manifest (pipelines/card.py)."""
    from pipelines.publish import card_plots

    return {"README.md"} | {p.file for p in card_plots.plot_data(manifest)}


def read_back(output: str) -> dict:
    """Read a published corpus through Beam FileSystems (any scheme): the manifest, and every file it
    lists checked against its size and SHA-256. Returns the manifest."""
    with FileSystems.open(FileSystems.join(output, "manifest.json")) as handle:
        manifest = json.loads(handle.read())
    for f in manifest["files"] + [{"path": p} for p in manifest["dead_letter"]["files"]]:
        with FileSystems.open(FileSystems.join(output, f["path"]), compression_type="uncompressed") as handle:
            data = handle.read()
        if "sha256" in f:
            assert hashlib.sha256(data).hexdigest() == f["sha256"], f["path"]
            assert len(data) == f["num_bytes"], f["path"]
    return manifest


def real_rows(catalog, dataset: str, n: int | None = None) -> list:
    """The first rows of a shipped dataset, read by its real loader (the demo's shipped samples)."""
    from pipelines.loaders import get_loader

    entry = catalog[dataset]
    loader_type, args = entry.loader_type, entry.loader_args
    if entry.sample_loader_type:
        loader_type, args = entry.sample_loader_type, entry.sample_loader_args
    loader = get_loader(loader_type)
    rows = [r for s in loader.plan(dataset, "train", entry.splits["train"], args) for r in loader.read(s)]
    return rows[:n] if n else rows
