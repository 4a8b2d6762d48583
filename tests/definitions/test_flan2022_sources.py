"""flan2022 reads the full sources; only `data: samples` mixtures (the demo, tests) read the samples
shipped in task_catalog/data. Issue 13 §1: a build that counted the 300-row CoT samples made esnli
~83% of CoT instead of ~48%, and repeated 80 NIV2 tasks' 5-8 rows hundreds of times."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import resources
from pipelines.cli import main
from pipelines.errors import CatalogError, LoaderError
from pipelines.loaders import get_loader
from pipelines.planning.mixture_report import plan_mixture
from pipelines.definitions.mixtures import load_mixture, resolve_datasets

FLAN_COT_TASKS = {"cot_gsm8k", "cot_strategyqa", "cot_creak", "cot_qasc", "cot_esnli", "cot_ecqa",
                  "cot_sensemaking", "stream_aqua", "stream_qed"}
SHARED_COT = Path("/work/shared/data/flan/cot")  # full TSVs on the project's CI machines only


def _paths(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _paths(v)]
    return []


def test_flan2022_plan_reads_no_shipped_sample_and_uses_flans_cot_names(catalog):
    shipped = str(resources.catalog_dir() / "data")
    entries = resolve_datasets(load_mixture("flan2022"), catalog)
    readers = [(e.name, p) for e in entries for p in _paths(dict(e.loader_args))]
    assert not [(n, p) for n, p in readers if p.startswith(shipped) or "task_catalog/data" in p]
    assert {e.name for e in entries if e.collection == "cot"} == FLAN_COT_TASKS
    niv2 = [e for e in entries if e.collection == "niv2"]
    assert len(niv2) == 1556 and all(set(e.loader_args) == {"task"} for e in niv2)
    # ... while the demo reads exactly those samples, offline.
    demo = resolve_datasets(load_mixture("demo"), catalog)
    assert demo and all(p.startswith(shipped) for e in demo for p in _paths(dict(e.loader_args)))


def test_show_counts_nothing_from_the_samples(catalog, tmp_path, monkeypatch):
    """No CoT root and an empty NIV2 root: every CoT/NIV2 size is assumed (the cap), none is 300 or 5-8."""
    monkeypatch.setenv("FLANMIX_COT_ROOT", str(tmp_path))
    monkeypatch.setenv("FLANMIX_NIV2_ROOT", str(tmp_path))
    rows, _, skipped = plan_mixture(load_mixture("cot_submix"), catalog, count=True)
    assert {r.task: (r.count, r.count_source) for r in rows} == {t: (100000, "assumed") for t in FLAN_COT_TASKS}
    reasons = dict(skipped)
    assert "FLANMIX_COT_ROOT" in reasons["cot_gsm8k"] and "git lfs pull" in reasons["cot_esnli"]


def test_cot_root_counts_the_full_tsvs(catalog, tmp_path, monkeypatch):
    """Two files in FLAN's raw format (question, answer, chain of thought; `\\n` escaped) under a root."""
    (tmp_path / "gsm8k_train.tsv").write_text(
        "Tom has 3 apples and buys 2 more. How many apples does he have?\t5\tHe starts with 3.\\nThen 3 + 2 = 5.\n"
        "A box holds 4 pens. How many pens are in 2 boxes?\t8\t2 boxes hold 2 * 4 = 8 pens.\n", encoding="utf-8")
    (tmp_path / "qed_train.tsv").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n", encoding="utf-8")
    monkeypatch.setenv("FLANMIX_COT_ROOT", str(tmp_path))
    entry = catalog["cot_gsm8k"]
    loader = get_loader(entry.loader_type)
    rows = [r for s in loader.plan(entry.name, "train", "train", entry.loader_args) for r in loader.read(s)]
    assert [r.row_id for r in rows] == ["train:1", "train:2"]
    assert rows[0].fields == {"question": "Tom has 3 apples and buys 2 more. How many apples does he have?",
                              "answer": "5", "rationale": "He starts with 3.\nThen 3 + 2 = 5."}
    qed = catalog["stream_qed"]
    shard = loader.plan(qed.name, "train", "train", qed.loader_args)[0]
    with pytest.raises(LoaderError, match="Git LFS pointer"):
        list(loader.read(shard))


@pytest.mark.skipif(not (SHARED_COT / "gsm8k_train.tsv").is_file(), reason="full CoT TSVs not on this machine")
def test_mixtures_show_flan2022_counts_the_real_cot_sizes(monkeypatch, capsys):
    monkeypatch.setenv("FLANMIX_COT_ROOT", str(SHARED_COT))
    assert main(["mixtures", "show", "cot_submix", "--json"]) == 0
    sizes = {t["task"]: (t["count"], t["count_source"]) for t in json.loads(capsys.readouterr().out)["tasks"]}
    # FLAN's task_configs.py declares these line counts for the TSVs.
    for task, n in {"cot_gsm8k": 7473, "cot_strategyqa": 2061, "cot_creak": 6915, "cot_qasc": 1084,
                    "cot_ecqa": 7112, "cot_sensemaking": 6070, "stream_aqua": 2728}.items():
        if (SHARED_COT / f"{task.split('_', 1)[1]}_train.tsv").is_file():
            assert sizes[task] == (n, "counted"), task


def test_a_samples_mixture_refuses_an_entry_without_a_sample(catalog, tmp_path):
    mix = tmp_path / "m.yaml"
    mix.write_text("schema_version: 1\nname: m\ndata: samples\nmembers: [{dataset: snli}]\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="snli has no sample_loader"):
        resolve_datasets(load_mixture(mix), catalog)


def test_preview_falls_back_to_the_shipped_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLANMIX_COT_ROOT", str(tmp_path))
    assert main(["templates", "preview", "cot_creak", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "showing the shipped sample instead" in out and out.count("=== cot_creak row train:") == 2
