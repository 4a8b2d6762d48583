"""The decoder-only layout and the jsonl text export, end to end through the real Beam job (the demo
mixture at 512/128, 3 shards, like `demo_corpus`)."""
from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines.formats import layouts as features
from pipelines.errors import FlanmixError
from pipelines.planning import exemplars
from pipelines.planning.hashing import keyed_hash
from pipelines.definitions.mixtures import load_mixture
from pipelines.formats.fit import fit_decoder, fit_to_length
from pipelines.formats.rows import unpack_row
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.definitions.templates import compile_template, render
from pipelines.stages.write_text import TEXT_DIR

from buildkit import small_mixture
from test_build_e2e import read_parquet, rendered_rows

DEMO_EXAMPLES = 2673


def read_text(out: Path) -> dict[int, list[dict]]:
    """shard index -> its records, in file order."""
    shards = {}
    for i, path in enumerate(sorted((out / TEXT_DIR).glob("*.jsonl"))):
        shards[i] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return shards


def packed_by_shard(out: Path) -> dict[int, list[tuple[str, list[int], list[int]]]]:
    """shard index -> (provenance, inputs ids, targets ids) of every segment in it."""
    shards = {}
    for i, path in enumerate(sorted((out / "parquet").glob("*.parquet"))):
        shards[i] = [(p, seg[0], seg[1]) for row in pq.read_table(path).to_pylist()
                     for p, seg in zip(row["provenance"], unpack_row(row))]
    return shards


def example_key(provenance: str) -> tuple[str, str]:
    dataset, _, _, row_id = provenance.split("|")
    return dataset, row_id


# --- --format jsonl --------------------------------------------------------------------------------

def test_text_export_lines_follow_the_declared_schema(text_corpus):
    out, _ = text_corpus
    schema = json.loads((Path(features.__file__).parents[2] / "schemas" / features.TEXT_EXPORT_SCHEMA_FILE).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    records = [r for recs in read_text(out).values() for r in recs]
    assert len(records) == DEMO_EXAMPLES
    for r in records:
        validator.validate(r)
        assert r["id"] == f"{r['dataset']}|{r['template_id']}|{r['prompt_setting']}|{r['row_id']}"


def test_text_export_is_sharded_and_ordered_like_the_packed_corpus(text_corpus, demo_corpus):
    text_out, plan = text_corpus
    text, packed = read_text(text_out), packed_by_shard(demo_corpus[0])
    assert sorted(text) == sorted(packed) == [0, 1, 2]
    for shard in text:
        assert {(r["dataset"], r["row_id"]) for r in text[shard]} == {example_key(p) for p, _, _ in packed[shard]}
        order = [(keyed_hash(plan.seed, "order", r["dataset"], r["row_id"]), r["id"]) for r in text[shard]]
        assert order == sorted(order)


def test_text_export_round_trips_the_rendered_text(text_corpus, demo_corpus, catalog, families, vocab):
    """Targets and zero-shot inputs are exactly the rendered text; a few-shot prompt ends with the
    rendered query after its exemplars. Tokenized, the zero-shot text is the packed corpus's tokens."""
    out, plan = text_corpus
    source = rendered_rows(plan, catalog, families)
    templates = {t.id: t for ds in plan.datasets.values() for t in ds.templates}
    packed = {example_key(p): (i, t) for segs in packed_by_shard(demo_corpus[0]).values() for p, i, t in segs}
    zero_shot = []
    for r in (r for recs in read_text(out).values() for r in recs):
        query, target = render(compile_template(templates[r["template_id"]]), source[(r["dataset"], r["row_id"])])
        assert r["targets"] == target
        assert r["collection"] == plan.datasets[r["dataset"]].collection
        if r["prompt_setting"].startswith("zs") or templates[r["template_id"]].shots == "few_shot":
            assert r["inputs"] == query
            zero_shot.append(r)
        else:
            sep = exemplars.separator(plan.seed, r["dataset"])  # the task's keyed example separator
            if templates[r["template_id"]].lead_once:  # the shared lead (NIV2's definition) once, first
                assert r["inputs"].startswith(query.split("\n\n")[0] + sep), r["id"]
                assert r["inputs"].endswith(query.split("\n\n")[-1]) and len(r["inputs"]) > len(query), r["id"]
            else:
                assert r["inputs"].endswith(sep + query) and len(r["inputs"]) > len(query)
    assert len(zero_shot) > 1000
    ids = vocab.encode_batch([r["inputs"] for r in zero_shot] + [r["targets"] for r in zero_shot])
    n = len(zero_shot)
    for i, r in enumerate(zero_shot):
        inputs, targets = packed[(r["dataset"], r["row_id"])]
        assert inputs == fit_to_length(ids[i], 512)[0].tolist()
        assert targets == fit_to_length(ids[n + i], 128)[0].tolist()


def test_text_export_manifest(text_corpus):
    out, plan = text_corpus
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["format"], manifest["layout"]) == ("jsonl", "text")
    assert manifest["feature_spec"] == "schemas/text_export.schema.json"
    assert manifest["sequence_length"] is None and manifest["packing_efficiency"] is None
    assert manifest["num_rows"] == manifest["num_examples"] == DEMO_EXAMPLES
    paths = [f["path"] for f in manifest["files"]]
    assert paths == [f"jsonl/demo-train-0000{i}-of-00003.jsonl" for i in range(3)]
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and data.count(b"\n") == f["num_rows"]
    assert sum(manifest["templates_used"].values()) == DEMO_EXAMPLES


# --- --layout decoder ------------------------------------------------------------------------------

def test_decoder_rows_hold_every_example_once_with_loss_on_targets(decoder_corpus, text_corpus, vocab):
    out, plan = decoder_corpus
    assert plan.decoder_length == 640
    rows = read_parquet(out)
    seen = collections.Counter()
    segments = {}
    for row in rows:
        tokens, seg, loss = (np.asarray(row[k]) for k in ("targets", "targets_segment_ids", "loss_mask"))
        assert len(tokens) == len(seg) == len(loss) == len(row["targets_positions"]) == 640
        assert ((loss == 1) <= (seg > 0)).all()  # loss only inside segments
        for (inputs, targets), prov in zip(unpack_row(row), row["provenance"]):
            assert inputs[-1] == 1 and targets[-1] == 1 and len(inputs) + len(targets) <= 640
            seen[example_key(prov)] += 1
            segments[example_key(prov)] = (inputs, targets)
    assert len(seen) == DEMO_EXAMPLES and set(seen.values()) == {1}
    # Zero-shot examples are exactly their text, tokenized and fitted to the one 640-token budget.
    text = [r for recs in read_text(text_corpus[0]).values() for r in recs if r["prompt_setting"].startswith("zs")]
    ids = vocab.encode_batch([r["inputs"] for r in text] + [r["targets"] for r in text])
    for i, r in enumerate(text):
        inputs, targets, _ = fit_decoder(ids[i], ids[len(text) + i], 640)
        assert segments[(r["dataset"], r["row_id"])] == (inputs.tolist(), targets.tolist()), r["id"]


def test_decoder_manifest_and_parquet_schema(decoder_corpus):
    out, _ = decoder_corpus
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["format"], manifest["layout"]) == ("packed", "decoder")
    assert manifest["feature_spec"] == "schemas/packed_decoder.features.json"
    assert manifest["sequence_length"] == {"targets": 640}
    rows = read_parquet(out)
    assert manifest["num_rows"] == len(rows)
    nonpad = sum(int(np.count_nonzero(r["targets_segment_ids"])) for r in rows)
    loss = sum(int(np.count_nonzero(r["loss_mask"])) for r in rows)
    assert manifest["packing_efficiency"] == {"targets": round(nonpad / (len(rows) * 640), 6),
                                              "loss": round(loss / (len(rows) * 640), 6)}
    assert sum(d["targets_tokens"] for d in manifest["datasets"].values()) == loss
    assert sum(d["inputs_tokens"] for d in manifest["datasets"].values()) == nonpad - loss
    assert len(rows) <= np.ceil(nonpad / 640) * 1.01  # within 1% of the lower bound
    for path in sorted((out / "parquet").glob("*.parquet")):
        assert pq.read_schema(path).equals(features.arrow_schema("decoder"))


# --- flags and plan --------------------------------------------------------------------------------

def test_plan_refuses_unknown_layout_format_and_stray_decoder_length(catalog, families, vocab):
    mixture = load_mixture("demo")
    for kwargs, match in (({"layout": "prefix"}, "unknown layout"), ({"output_format": "csv"}, "unknown output format"),
                          ({"decoder_length": 100}, "needs layout 'decoder'"), ({"pack_buffer": 0}, "pack_buffer")):
        with pytest.raises(FlanmixError, match=match):
            make_plan(mixture, catalog, families, vocab, BuildOptions(**kwargs))
    plan = make_plan(mixture, catalog, families, vocab, BuildOptions(layout="decoder"))
    assert plan.decoder_length == 2048 + 512


def test_cli_builds_a_decoder_corpus(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["build", "--mixture", str(small_mixture(tmp_path)), "--output", str(out), "--layout", "decoder",
                     "--decoder_length", "300", "--pack_buffer", "64", "--num_shards", "1", "--progress", "0"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["layout"] == "decoder" and manifest["sequence_length"] == {"targets": 300}
    assert "packed rows (decoder)" in capsys.readouterr().out
    rows = read_parquet(out)
    assert {len(r["targets"]) for r in rows} == {300}
    assert sum(len(r["provenance"]) for r in rows) == manifest["num_examples"] > 0
