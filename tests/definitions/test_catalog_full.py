"""The whole Flan Collection catalog: counts against the facts, fixtures, template coverage, lint,
preview for every dataset, and the generator reproducing the committed generated entries."""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
from collections import Counter

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from pipelines import resources  # noqa: E402
from pipelines.definitions.catalog import fixture_rows  # noqa: E402
from pipelines.definitions.catalog_stats import catalog_stats  # noqa: E402
from pipelines.cli import main  # noqa: E402
from pipelines.cli.preview import preview  # noqa: E402
from pipelines.definitions.fieldtypes import field_problem  # noqa: E402
from pipelines.definitions.lint import lint_catalog  # noqa: E402
from pipelines.loaders import offline_ready  # noqa: E402
from pipelines.definitions.mixtures import load_mixture, resolve_datasets  # noqa: E402
from pipelines.definitions.templates import bind_templates  # noqa: E402

TOOLS = resources.catalog_dir() / "tools"
CAPS = {"flan2021": 30000, "t0": 20000, "niv2": 5000, "cot": 100000, "dialog": 200000}


@pytest.fixture(scope="module")
def catalog(catalog):
    """Flan's entries only: these tests check Flan's facts, and authors' `user` entries are not Flan."""
    from pipelines.definitions.catalog_stats import flan_only

    return flan_only(catalog)


def info_rows():
    with open(TOOLS / "facts" / "flan_collection_info.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_counts_per_collection(catalog):
    stats = catalog_stats(catalog)
    assert {c: (s["entries"], s["datasets"], s["tasks"], s["forward_tasks"]) for c, s in stats.items()} == {
        "flan2021": (71, 70, 142, 71),  # MNLI is two tasks (matched, mismatched) as in FLAN
        "t0": (193, 55, 193, 193),
        "niv2": (1556, 372, 1556, 1556),
        "cot": (9, 9, 36, 9),
        "dialog": (3, 3, 6, 3),
        "program_synthesis": (5, 5, 10, 5),
        "total": (1837, 484, 1943, 1837),
    }
    assert (stats["total"]["categories"], stats["total"]["forward_categories"]) == (162, 138)


def test_every_row_of_the_collection_info_is_a_task_of_the_catalog(catalog):
    """(dataset, category) pairs and languages as in flan_collection_info.csv; the one dataset left
    out (trivia_qa_wiki_missing, no source in the public code) is documented in the README."""
    rows = [r for r in info_rows() if r["Dataset"] != "trivia_qa_wiki_missing"]
    assert Counter((r["Dataset"], r["Generic Task Category"]) for r in rows) == Counter(
        (e.dataset, c) for e in catalog for c in e.task_categories)
    by_task = {e.name: e for e in catalog}
    for r in rows:
        if r["Source"] in ("NIv2", "T0"):
            entry = by_task[r["Specific Task Category"].lower()]
            assert entry.dataset == r["Dataset"] and entry.info_source == r["Source"]
            text = r["Languages"]
            assert list(entry.languages) == (ast.literal_eval(text) if text.startswith("[") else [text]), entry.name


def test_caps_and_fixture_rows(catalog):
    for entry in catalog:
        assert entry.default_cap == CAPS.get(entry.collection), entry.name
        rows = fixture_rows(entry)
        assert rows, f"{entry.name} has no fixture row"
        for row in rows:
            assert field_problem(row.fields, entry.fields) is None, (entry.name, row.row_id)


def _templates(entry, families):
    return bind_templates(entry.templates, families, entry.template_vars)


def test_template_coverage(catalog, families):
    for entry in catalog:
        ts = _templates(entry, families)
        forward_zs = [t for t in ts if t.shots == "zero_shot" and not t.inversion]
        if entry.collection in ("flan2021", "t0"):
            assert len(forward_zs) >= 5, entry.name
            if "options" in entry.template_vars:  # a classification / multiple-choice dataset
                assert {t.options for t in forward_zs} == {True, False}, entry.name
        if entry.collection in ("flan2021", "dialog", "program_synthesis"):
            assert any(t.inversion for t in ts) and len(forward_zs) >= 5, entry.name
        if entry.collection == "niv2":
            assert entry.templates == ("niv2_definition",)
            assert {t.shots for t in ts} == {"zero_shot", "few_shot"}
        if entry.collection == "cot":
            # every forward target is rationale + answer (no answer-only template); 3 of 13 inverted (FLAN 0.3 : 1.0)
            assert all(t.cot for t in ts if not t.inversion) and len(forward_zs) >= 10, entry.name
            assert sum(t.inversion for t in ts) * 13 == len(ts) * 3, entry.name
            assert any("step" in t.inputs for t in ts)


def test_lint_covers_the_whole_catalog(catalog, families):
    assert lint_catalog(catalog, families, render_rows=2) == []


def test_preview_works_for_every_dataset_from_fixture_rows(catalog, families, capsys):
    for entry in catalog:
        assert preview(catalog, families, entry.name, 1, None, use_fixtures=True) == 0
    out = capsys.readouterr().out
    assert out.count("=== ") == len(catalog) and "[dead letter]" not in out


@pytest.mark.parametrize("dataset", ["snli", "amazon_polarity_is_this_review", "task001_quoref_question_generation", "task_master"])
def test_preview_falls_back_to_fixture_rows_when_the_source_is_unavailable(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FLANMIX_NIV2_ROOT", str(tmp_path))
    assert main(["templates", "preview", dataset, "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "source unavailable (" in out and "showing the entry's fixture rows instead" in out
    assert out.count(f"=== {dataset} row ") == 2 and "[dead letter]" not in out


def test_catalog_list_filters_and_stats_json(capsys):
    assert main(["catalog", "list", "--collection", "niv2", "--category", "question answering"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 50 and all(" niv2 " in line and "Question Answering" in line for line in lines)
    assert main(["catalog", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["forward_tasks"] == 1837


def test_demo_mixture_uses_only_shipped_data(catalog):
    for entry in resolve_datasets(load_mixture("demo"), catalog):
        assert offline_ready(entry.loader_type, entry.loader_args, entry.splits["train"]), entry.name


def test_generator_reproduces_the_committed_entries(tmp_path, catalog):
    """Generated entries are data; the generator, fed the same facts, writes them byte for byte.
    The NIV2 metadata it needs is rebuilt from the committed fixture rows."""
    metadata = {}
    for e in catalog.by_collection("niv2"):
        if not e.sample_loader_type:  # tasks with a shipped sample take their fixture row from it
            f = e.fixtures[0]["fields"]
            metadata[e.name] = {"definition": f["definition"], "positive_examples": f["positive_examples"][0]}
    meta_path = tmp_path / "meta.json"
    meta_path.write_text(json.dumps(metadata), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("generate_entries", TOOLS / "generate_entries.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    import sys

    argv = sys.argv
    sys.argv = ["generate_entries.py", "--niv2-metadata", str(meta_path), "--out", str(tmp_path / "out")]
    try:
        gen.main()
    finally:
        sys.argv = argv
    written = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.yaml"))
    assert len(written) == 1556 + 193 + 9
    committed = resources.catalog_dir() / "datasets"
    for rel in written:
        assert (tmp_path / "out" / rel).read_bytes() == (committed / rel).read_bytes(), rel
