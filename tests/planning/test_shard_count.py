"""Output shards are sized by the expected output (planning/shard_count.py): a task upsampled 20x, a
large example target or a token target get proportionally more shards; an examples-proportional
mixture at its default target keeps what the source alone gave it (the demo: 1 shard)."""
from __future__ import annotations

import math

import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.definitions.mixtures import load_mixture
from pipelines.definitions.templates import load_templates
from pipelines.loaders.base import SourceShard
from pipelines.planning import shard_count
from pipelines.planning.plan import BuildOptions, make_plan
from tests.test_bad_input import ENTRY, FAMILY

SHARD_BYTES = 4096  # the test's stand-in for 64 MiB


def _project(tmp_path, small_rows: int, big_rows: int, members: str, extra: str = ""):
    for name, n, width in (("small_qa", small_rows, 120), ("big_qa", big_rows, 40)):
        data = tmp_path / "data" / f"{name}.tsv"
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(f"Q{i} {'x' * width}\tA{i}\tR{i}\n" for i in range(n)), encoding="utf-8")
        (tmp_path / "catalog").mkdir(exist_ok=True)
        (tmp_path / "catalog" / f"{name}.yaml").write_text(ENTRY.format(data=data).replace("toy_qa", name), encoding="utf-8")
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "toy.yaml").write_text(FAMILY.format(targets="{{ answer }}"), encoding="utf-8")
    mixture = tmp_path / "mix.yaml"
    mixture.write_text(f"schema_version: 1\nname: mix\nsequence_length: {{inputs: 64, targets: 32}}\n{extra}members:\n{members}",
                       encoding="utf-8")
    return load_mixture(mixture), load_catalog(tmp_path / "catalog"), load_templates(tmp_path / "templates")


def _sizes(tmp_path):
    return {p.stem: p.stat().st_size for p in (tmp_path / "data").glob("*.tsv")}


@pytest.fixture(autouse=True)
def small_shards(monkeypatch):
    monkeypatch.setattr(shard_count, "SOURCE_BYTES_PER_OUTPUT_SHARD", SHARD_BYTES)


def test_examples_proportional_keeps_the_source_rule(tmp_path, vocab):
    mixture, catalog, families = _project(tmp_path, 100, 400, "  - dataset: small_qa\n  - dataset: big_qa\n")
    plan = make_plan(mixture, catalog, families, vocab, BuildOptions())
    assert plan.num_shards == math.ceil(sum(_sizes(tmp_path).values()) / SHARD_BYTES)
    assert plan.dead_letter_shards == plan.num_shards  # both from the source here


def test_a_task_upsampled_20x_gets_20x_its_share_of_shards(tmp_path, vocab):
    # rates 2:1 of 3,000 examples: small_qa (100 rows) gets 2,000, 20 copies a row; big_qa (1,000) 1,000
    mixture, catalog, families = _project(tmp_path, 100, 1000, "  - {dataset: small_qa, rate: 2}\n  - {dataset: big_qa, rate: 1}\n",
                                          extra="target: {examples: 3000}\n")
    plan = make_plan(mixture, catalog, families, vocab, BuildOptions())
    sizes = _sizes(tmp_path)
    # the launcher's row estimate from the head of each file (exact here: every row is in the first 64 KiB)
    rows = {name: len((tmp_path / "data" / f"{name}.tsv").read_text().splitlines()) for name in sizes}
    assert shard_count.estimated_rows(plan.sources) == {name: (rows[name], sizes[name]) for name in sizes}
    expected = sizes["small_qa"] * (2 / 3) * 3000 / rows["small_qa"] + sizes["big_qa"] * (1 / 3) * 3000 / rows["big_qa"]
    assert plan.num_shards == math.ceil(expected / SHARD_BYTES)
    source_rule = math.ceil(sum(sizes.values()) / SHARD_BYTES)
    assert plan.num_shards == math.ceil((20 * sizes["small_qa"] + sizes["big_qa"]) / SHARD_BYTES) > 4 * source_rule
    assert plan.dead_letter_shards == source_rule


def test_example_and_token_targets(tmp_path, vocab):
    mixture, catalog, families = _project(tmp_path, 100, 400, "  - dataset: small_qa\n  - dataset: big_qa\n")
    one_epoch = make_plan(mixture, catalog, families, vocab, BuildOptions()).num_shards
    twenty = make_plan(mixture, catalog, families, vocab, BuildOptions(target_examples=20 * 500)).num_shards
    assert twenty in range(20 * one_epoch - 20, 20 * one_epoch + 1)  # rows known from the files' heads
    tokens = make_plan(mixture, catalog, families, vocab, BuildOptions(target_tokens=100_000)).num_shards
    assert tokens == math.ceil(100_000 * shard_count.SOURCE_BYTES_PER_TOKEN / SHARD_BYTES)
    assert make_plan(mixture, catalog, families, vocab, BuildOptions(num_shards=3, target_examples=10**6)).num_shards == 3


def test_known_row_counts_are_used_where_loaders_have_them():
    shards = [SourceShard("a", "train", "hf_datasets", {"_rows": 10}, 0, 5000),
              SourceShard("a", "train", "hf_datasets", {"_rows": 30}, 1, 5000),
              SourceShard("b", "train", "parquet", {"path": "x"}, 0, 4097)]
    assert shard_count.estimated_rows(shards) == {"a": (40, 10000), "b": (5, 4097)}  # 1 KiB a row: unknown


def test_the_demo_keeps_one_shard(catalog, families, vocab, monkeypatch):
    monkeypatch.setattr(shard_count, "SOURCE_BYTES_PER_OUTPUT_SHARD", 64 * 1024 * 1024)
    plan = make_plan(load_mixture("demo"), catalog, families, vocab, BuildOptions())
    assert (plan.num_shards, plan.dead_letter_shards) == (1, 1)
