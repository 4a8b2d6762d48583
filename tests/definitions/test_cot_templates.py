"""CoT and dialog prompts: every forward CoT target carries the rationale and the answer, and the
build's uniform template choice realises FLAN's inversion share (rates 1.0 : 0.3, i.e. 23%)."""
from __future__ import annotations

import pytest

from pipelines.definitions.catalog import fixture_rows
from pipelines.loaders import get_loader
from pipelines.definitions.mixtures import FewShotConfig
from pipelines.planning.sampling import choose_variant, supported_settings
from pipelines.definitions.templates import bind_templates, compile_template, render

COT = ["cot_gsm8k", "cot_strategyqa", "cot_creak", "cot_qasc", "cot_esnli", "cot_ecqa", "cot_sensemaking",
       "stream_aqua", "stream_qed"]


@pytest.mark.parametrize("collection,names", [("cot", COT), ("dialog", ["wiki_dialog", "qrecc"])])
def test_realized_inversion_share_is_flans(catalog, families, collection, names):
    """The sub-mixtures' settings (zs_noopt / fs_noopt 50:50), 18,000 copies per collection, chosen by the
    build's own keyed choice: inverted prompts are 0.3 / 1.3 = 23% of them."""
    wanted = {"zs_noopt": 0.5, "fs_noopt": 0.5}
    pool = tuple((f"train:{i}", {}) for i in range(8))
    inverted = total = 0
    for name in names:
        entry = catalog[name]
        ts = bind_templates(entry.templates, families, entry.template_vars)
        assert entry.templates == (name,) and len([t for t in ts if not t.inversion]) >= 10
        settings = supported_settings(ts, wanted, len(pool))
        for i in range(18000 // len(names)):
            v = choose_variant(ts, settings, pool, FewShotConfig(), 0, name, f"train:{i}", f"train:{i}")
            inverted += v.template.inversion
            total += 1
    assert abs(inverted / total - 0.3 / 1.3) < 0.01, inverted / total


def test_every_forward_cot_target_is_rationale_then_answer(catalog, families):
    for name in COT:
        entry = catalog[name]
        row = fixture_rows(entry)[0]
        for t in bind_templates(entry.templates, families, entry.template_vars):
            inputs, target = render(compile_template(t), row.fields)
            if t.inversion:
                assert t.cot is False and row.fields["answer"] in inputs
                continue
            assert t.cot, t.id
            r, a = target.find(row.fields["rationale"]), target.rfind(row.fields["answer"])
            assert r >= 0 and a > r, (t.id, target)  # the reasoning first, the answer after it


def test_cot_fixture_rows_are_what_the_loader_yields_from_the_real_tsv(catalog):
    """The fixture row is the loader's first row of the set's TSV (literal \\n unescaped, fields stripped)."""
    for name in COT:
        entry = catalog[name]
        if not entry.sample_loader_type:
            continue
        loader = get_loader(entry.sample_loader_type)
        shard = loader.plan(name, "train", "train", entry.sample_loader_args)[0]
        first = next(iter(loader.read(shard)))
        assert (first.row_id, first.fields) == (entry.fixtures[0]["row_id"], entry.fixtures[0]["fields"]), name
