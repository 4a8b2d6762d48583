"""The mixture planner: caps, rates, nesting, renormalisation, and realized shares of real builds."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.cli import main
from pipelines.errors import CatalogError, LoaderError
from pipelines.definitions.mixtures import default_target, load_mixture, resolve_weights, sampling_rate
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.definitions.templates import load_templates

from conftest import build_corpus, write

ENTRY = """\
schema_version: 1
name: {name}
collections: [{collection}]
task_categories: [Question Answering]
languages: [English]
default_cap: {cap}
loader: {{type: cot_tsv, args: {{path: {path}}}}}
splits: {{train: train}}
fields: {{question: string, answer: string, rationale: string}}
templates: [qa]
"""

FAMILY = """\
schema_version: 1
family: qa
templates:
  - {id: qa_zs, shots: zero_shot, options: false, cot: false, inputs: "Q: {{ question }}", targets: "{{ answer }}"}
  - {id: qa_zs_cot, shots: zero_shot, options: false, cot: true, inputs: "Explain. {{ question }}", targets: "{{ rationale }} {{ answer }}"}
"""


def make_project(tmp: Path, sizes: dict[str, tuple[str, int]], cap: int = 1000) -> tuple[Path, Path]:
    """One dataset per name with `size` real TSV rows in the given collection."""
    for name, (collection, size) in sizes.items():
        rows = "".join(f"Question {i} of {name}?\tanswer {i}\tbecause {i}.\n" for i in range(size))
        data = write(tmp / "data" / f"{name}.tsv", rows)
        write(tmp / "catalog" / f"{name}.yaml", ENTRY.format(name=name, collection=collection, cap=cap, path=data))
    write(tmp / "templates" / "qa.yaml", FAMILY)
    return tmp / "catalog", tmp / "templates"


def weights_by_task(weights):
    return {w.task: w.weight for w in weights}


def test_examples_proportional_with_cap(tmp_path):
    cat_dir, _ = make_project(tmp_path, {"a": ("cot", 1), "b": ("cot", 1), "c": ("cot", 1)})
    mix = write(tmp_path / "m.yaml", "schema_version: 1\nname: m\nmembers: [{collection: cot, cap: 100}]\n")
    counts = {"a": 50, "b": 100, "c": 400}
    w = weights_by_task(resolve_weights(load_mixture(mix), load_catalog(cat_dir), counts))
    assert w == pytest.approx({"a": 0.2, "b": 0.4, "c": 0.4})  # min(n, 100) = 50, 100, 100
    assert default_target(resolve_weights(load_mixture(mix), load_catalog(cat_dir), counts), counts) == 250


def test_rates_split_levels_and_nested_mixtures(tmp_path):
    cat_dir, _ = make_project(tmp_path, {"a": ("cot", 1), "b": ("cot", 1), "n1": ("niv2", 1), "n2": ("niv2", 1)})
    write(tmp_path / "sub.yaml", "schema_version: 1\nname: sub\ndefault_cap: 10\nmembers: [{collection: niv2}]\n")
    top = write(tmp_path / "top.yaml", "schema_version: 1\nname: top\nmembers:\n"
                "  - {collection: cot, rate: 3}\n  - {mixture: sub, rate: 1}\n")
    counts = {"a": 10, "b": 30, "n1": 5, "n2": 500}
    weights = resolve_weights(load_mixture(top), load_catalog(cat_dir), counts)
    w = weights_by_task(weights)
    # cot gets 3/4 split 10:30 (caps 1000 do not bind); sub gets 1/4 split min(5,10):min(500,10) = 1:2
    assert w == pytest.approx({"a": 0.1875, "b": 0.5625, "n1": 0.25 / 3, "n2": 0.5 / 3})
    assert sum(w.values()) == pytest.approx(1.0)
    assert {x.task: x.path for x in weights}["n1"] == ("top", "sub")


def test_unavailable_task_drops_out_and_weights_renormalise(tmp_path):
    cat_dir, _ = make_project(tmp_path, {"a": ("cot", 1), "b": ("cot", 1), "n": ("niv2", 1)})
    top = write(tmp_path / "top.yaml", "schema_version: 1\nname: top\nmembers:\n"
                "  - {collection: cot, rate: 0.5}\n  - {collection: niv2, rate: 0.5}\n")
    counts = {"a": 10, "b": 10, "n": 10}
    w = weights_by_task(resolve_weights(load_mixture(top), load_catalog(cat_dir), counts, available={"a", "n"}))
    assert w == pytest.approx({"a": 0.5, "n": 0.5})
    w = weights_by_task(resolve_weights(load_mixture(top), load_catalog(cat_dir), counts, available={"a", "b"}))
    assert w == pytest.approx({"a": 0.5, "b": 0.5})


def test_mixing_rates_and_no_rates_in_one_level_is_refused(tmp_path):
    mix = write(tmp_path / "bad.yaml", "schema_version: 1\nname: bad\nmembers: [{collection: cot, rate: 1}, {collection: niv2}]\n")
    with pytest.raises(CatalogError, match="every member has a `rate` or none"):
        load_mixture(mix)


def test_sampling_rate_up_and_down():
    assert sampling_rate(0.5, 100, 1000, upsample=True) == 5.0
    assert sampling_rate(0.5, 100, 1000, upsample=False) == 1.0
    assert sampling_rate(0.01, 100, 1000, upsample=True) == pytest.approx(0.1)
    assert sampling_rate(0.3, 0, 1000, upsample=True) == 0.0


def test_missing_source_is_skipped_and_reported_or_fatal_with_strict(tmp_path, vocab):
    cat_dir, tpl_dir = make_project(tmp_path, {"a": ("cot", 20), "gone": ("cot", 5)})
    (tmp_path / "data" / "gone.tsv").unlink()
    mix = write(tmp_path / "m.yaml", "schema_version: 1\nname: m\nsequence_length: {inputs: 64, targets: 32}\nmembers: [{collection: cot}]\n")
    catalog, families = load_catalog(cat_dir), load_templates(tpl_dir)
    with pytest.raises(LoaderError, match=r"--strict.*gone.*no file matches"):
        make_plan(load_mixture(mix), catalog, families, vocab, BuildOptions(strict=True))
    out = tmp_path / "out"
    plan = build_corpus(out, catalog, families, vocab, mixture=str(mix), num_shards=1)
    assert [name for name, _ in plan.skipped] == ["gone"]
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = manifest["mixing"]["skipped_sources"]
    assert skipped[0]["dataset"] == "gone" and "no file matches" in skipped[0]["reason"]
    assert manifest["datasets"]["a"]["examples"] == 20 and manifest["datasets"]["a"]["target_share"] == 1.0


SKEW_RATES = {"flan2021": 0.4, "t0": 0.32, "niv2": 0.2, "cot": 0.05, "dialog": 0.03}


def test_realized_shares_within_one_percent_on_skewed_50_task_mixture(tmp_path, vocab):
    """50 tasks, sizes from 3 to 3000 rows, Flan 2022 collection rates, caps that bind for some."""
    rng = np.random.default_rng(1)
    collections = list(SKEW_RATES)
    sizes = {f"t{i:02d}": (collections[i % 5], int(3 * 1000 ** (rng.random()))) for i in range(50)}
    cat_dir, tpl_dir = make_project(tmp_path, sizes, cap=800)
    members = "".join(f"  - {{collection: {c}, rate: {r}}}\n" for c, r in SKEW_RATES.items())
    mix = write(tmp_path / "skew.yaml", "schema_version: 1\nname: skew\nseed: 3\n"
                "sequence_length: {inputs: 64, targets: 16}\ntarget: {examples: 20000}\n"
                "prompt_settings: {zs_noopt: 0.7, fs_noopt: 0.3}\nfew_shot: {max_exemplars: 2, pool_size: 8}\n"
                f"members:\n{members}")
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mix), num_shards=2)
    mixing = json.loads((out / "manifest.json").read_text())["mixing"]
    total = sum(c["examples"] for c in mixing["collections"].values())
    assert abs(total - 20000) < 400
    for name, share in mixing["collections"].items():
        assert share["target_share"] == pytest.approx(SKEW_RATES[name], abs=1e-6)
        assert abs(share["realized_share"] - share["target_share"]) < 0.01, (name, share)
    for name, share in mixing["prompt_settings"].items():
        assert abs(share["realized_share"] - share["target_share"]) < 0.01, (name, share)
    assert mixing["upsampled"] > 0 and mixing["downsampled"] > 0


def test_mixtures_show_prints_every_task_with_weight_and_expected_count(capsys):
    assert main(["mixtures", "show", "demo"]) == 0
    out = capsys.readouterr().out
    assert "target 2673 examples" in out
    assert "cot_gsm8k" in out and "0.11223" in out and "300.0" in out
    assert main(["mixtures", "show", "demo", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["tasks"]) == 87 and abs(sum(t["weight"] for t in plan["tasks"]) - 1) < 1e-9


def test_flan2022_recipe_resolves_over_the_whole_catalog(catalog):
    """The shipped Flan 2022 mixture: collection rates 0.4/0.32/0.2/0.05/0.03, per-collection caps,
    and no held-out evaluation set (MMLU, BBH, TyDiQA, MGSM) among its tasks."""
    from pipelines.planning.mixture_report import plan_mixture

    mixture = load_mixture("flan2022")
    rows, target, _ = plan_mixture(mixture, catalog, count=False)
    by_collection = {}
    for r in rows:
        by_collection[r.collection] = by_collection.get(r.collection, 0.0) + r.weight
    assert by_collection == pytest.approx({"flan2021": 0.4, "t0": 0.32, "niv2": 0.2, "cot": 0.05, "dialog": 0.03})
    caps = {r.collection: r.cap for r in rows}
    assert caps == {"flan2021": 30000, "t0": 20000, "niv2": 5000, "cot": 100000, "dialog": 200000}
    # every entry of those collections but task_master (the public recipe's dialog filter keeps
    # only wiki_dialog and qrecc)
    assert len(rows) == len({e.name for e in catalog if e.collection in caps} - {"task_master"})
    assert "task_master" not in {r.task for r in rows}
    held_out = ("mmlu", "mmmlu", "bbh", "bigbench_hard", "tydi", "mgsm")
    assert not [r.task for r in rows if any(h in r.task.lower() for h in held_out)]
    settings = {r.collection: dict(load_mixture(r.path.split("/")[1]).prompt_settings) for r in rows}
    assert settings["flan2021"] == {"zs_opt": 0.25, "zs_noopt": 0.25, "fs_opt": 0.25, "fs_noopt": 0.25}


def test_a_token_target_is_met_within_a_few_percent(tmp_path, vocab):
    """target: {tokens: N}: sizes in tokens are measured on each task's pool, rendered (few-shot
    included) and tokenized as the build does, then turned into an example target."""
    sizes = {"a": ("cot", 3000), "b": ("cot", 400), "n": ("niv2", 1200)}
    cat_dir, tpl_dir = make_project(tmp_path, sizes)
    mix = write(tmp_path / "tok.yaml", "schema_version: 1\nname: tok\nsequence_length: {inputs: 64, targets: 16}\n"
                "target: {tokens: 120000}\nprompt_settings: {zs_noopt: 0.5, fs_noopt: 0.5}\n"
                "few_shot: {max_exemplars: 2, pool_size: 64}\n"
                "members: [{collection: cot, rate: 0.7}, {collection: niv2, rate: 0.3}]\n")
    assert load_mixture(mix).target_tokens == 120000
    out = tmp_path / "out"
    build_corpus(out, load_catalog(cat_dir), load_templates(tpl_dir), vocab, mixture=str(mix), num_shards=1)
    mixing = json.loads((out / "manifest.json").read_text())["mixing"]
    assert mixing["target_tokens"] == 120000
    assert abs(mixing["realized_tokens"] - 120000) / 120000 < 0.05, mixing["realized_tokens"]
    assert set(mixing["tokens_per_example_estimate"]) == {"a", "b", "n"}
    for name, share in mixing["collections"].items():
        assert abs(share["realized_share"] - share["target_share"]) < 0.01, (name, share)


def test_workers_resolve_the_same_weights_from_the_slim_plan(catalog, vocab, tmp_path, monkeypatch):
    """The survey's DoFns carry `SurveySlice.of(plan)`: catalog membership only (no fixtures, no loader
    args) and no skip reasons (only the manifest's slice keeps those). Mixture weights must come out
    the same from it."""
    import pickle

    from pipelines.planning.slices import ManifestSlice, SurveySlice

    # Offline, flan2022 reads full sources only (no shipped sample): supply one full CoT file.
    (tmp_path / "gsm8k_train.tsv").write_text("What is 2 + 3?\t5\t2 + 3 = 5.\n", encoding="utf-8")
    monkeypatch.setenv("FLANMIX_COT_ROOT", str(tmp_path))
    plan = make_plan(load_mixture("flan2022"), catalog, load_templates(), vocab)  # offline: most sources skipped
    slim, for_manifest = SurveySlice.of(plan), ManifestSlice.of(plan)
    counts = {name: 1000 + 7 * i for i, name in enumerate(sorted(plan.datasets))}
    available = set(plan.datasets)
    assert (resolve_weights(slim.mixture_spec, slim.catalog, counts, available)
            == resolve_weights(plan.mixture_spec, plan.catalog, counts, available))
    assert not hasattr(slim, "skipped") and for_manifest.skipped == plan.skipped and plan.skipped
    assert len(pickle.dumps(slim)) < len(pickle.dumps(plan)) / 5
    assert all(not hasattr(e, "fixtures") and not hasattr(e, "loader_args") for e in slim.catalog)
