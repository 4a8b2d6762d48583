"""The data card (pipelines/card.py, card_plots.py, card_stats.py) on real builds of the demo mixture:
`datasets.load_dataset(DIR)` loads exactly the shards' rows offline, the card's numbers are the
manifest's, and every plot is a PNG of the fixed size whose data is what the rows themselves say."""
from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from pipelines.publish import card, card_plots, card_stats
from pipelines.cli import main


def _manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _table(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after the line starting with `heading`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows, inside = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            inside = True
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif inside:
            break
    return rows[2:]  # header and rule


def _parquet_rows(directory: Path, manifest: dict) -> pa.Table:
    files = card.data_files(manifest)
    return pa.concat_tables([pq.read_table(directory / f) for f in files])


# --- Hugging Face -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["encdec", "decoder", "text"])
def test_load_dataset_with_no_arguments_returns_the_shards_rows(demo_full, kind, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    directory, _ = demo_full[kind]
    manifest = _manifest(directory)
    ds = datasets.load_dataset(str(directory), cache_dir=str(tmp_path / "hf"))
    assert list(ds) == [manifest["split"]]
    rows = ds[manifest["split"]]
    if kind == "text":
        expected = [json.loads(line) for f in card.data_files(manifest)
                    for line in (directory / f).read_text(encoding="utf-8").splitlines()]
        assert card.data_files(manifest)[0].startswith("jsonl/")
        assert rows.to_list() == expected
    else:
        assert rows.to_dict() == _parquet_rows(directory, manifest).to_pydict()
    assert rows.num_rows == manifest["num_rows"]


# --- front matter and body ------------------------------------------------------------------------

def test_front_matter_names_the_shards_and_the_sources(demo_full):
    directory, plan = demo_full["encdec"]
    manifest = _manifest(directory)
    meta = _front_matter((directory / "README.md").read_text(encoding="utf-8"))
    assert meta["configs"] == [{"config_name": "default", "default": True, "data_files": [
        {"split": "train", "path": ["parquet/demo-train-00000-of-00002.parquet", "parquet/demo-train-00001-of-00002.parquet"]}]}]
    assert meta["size_categories"] == ["n<1K"] and manifest["num_rows"] < 1000
    # the demo's sources are all Apache-2.0 (the Flan CoT release and allenai/natural-instructions)
    assert {d["license"] for d in manifest["datasets"].values()} == {
        "Apache-2.0 (Flan Collection CoT release)", "Apache-2.0 (allenai/natural-instructions)"}
    assert meta["license"] == "apache-2.0"
    assert meta["task_categories"][0] == "text2text-generation" and "translation" in meta["task_categories"]
    assert "en" in meta["language"] and meta["multilinguality"] == "multilingual"
    assert set(manifest["datasets"]) == set(plan.datasets)
    for name, entry in ((n, plan.catalog[n]) for n in plan.datasets):
        assert manifest["datasets"][name]["license"] == entry.license
        assert manifest["datasets"][name]["languages"] == list(entry.languages)
    decoder_meta = _front_matter((demo_full["decoder"][0] / "README.md").read_text(encoding="utf-8"))
    assert decoder_meta["task_categories"][0] == "text-generation"


def test_licence_language_and_size_mappings():
    assert card.license_id("Apache-2.0 (bigscience/P3)") == "apache-2.0"
    assert card.license_id("CC BY-SA 4.0") == "cc-by-sa-4.0"
    assert card.license_id("CC0 (ParaCrawl)") == "cc0-1.0"
    assert card.license_id("CC BY-NC-ND 4.0") == "cc-by-nc-nd-4.0"
    assert card.license_id("") == "unknown" and card.license_id("Some custom terms") == "other"
    assert card.language_code("Central Khmer") == "km" and card.language_code("Klingon") is None
    assert [card.size_category(n) for n in (0, 999, 1000, 123_456, 10**9)] == ["n<1K", "n<1K", "1K<n<10K", "100K<n<1M", "n>1B"]


def test_card_tables_hold_the_manifests_numbers(demo_full):
    directory, _ = demo_full["encdec"]
    m = _manifest(directory)
    text = (directory / "README.md").read_text(encoding="utf-8")
    mixing = m["mixing"]
    cols = _table(text, "## Collections")
    assert [r[0] for r in cols] == sorted(mixing["collections"])
    for name, examples, target, realized in cols:
        c = mixing["collections"][name]
        assert (examples, target, realized) == (f"{c['examples']:,}", f"{100 * c['target_share']:.2f}%",
                                                f"{100 * c['realized_share']:.2f}%")
    top = _table(text, "## The 20 largest tasks")
    expected = sorted(m["datasets"].items(), key=lambda kv: (-kv[1]["examples"], kv[0]))[:20]
    assert [(r[0], r[2]) for r in top] == [(n, f"{d['examples']:,}") for n, d in expected]
    for row in top:
        d = m["datasets"][row[0]]
        assert row[5] == f"{d['inputs_tokens'] + d['targets_tokens']:,}" and row[6] == f"{d['truncated']:,}"
    settings = _table(text, "## Prompt settings")
    assert {r[0]: r[1] for r in settings} == {s: f"{v['examples']:,}" for s, v in mixing["prompt_settings"].items()}
    eff = m["packing_efficiency"]
    assert f"inputs {100 * eff['inputs']:.2f}%, targets {100 * eff['targets']:.2f}%" in text
    assert f"{m['dead_letter']['count']:,} rows went to `dead_letter/`" in text
    sources = _table(text, "Every source")
    assert len(sources) == len(m["datasets"])
    assert {r[0]: (r[2], r[4]) for r in sources} == {n: (d["license"], f"{d['examples']:,}") for n, d in m["datasets"].items()}
    assert f"--seed {m['seed']}" in text and "--inputs_length 2048" in text and "--num_shards 2" in text
    for p in card_plots.plot_data(m):
        assert f"]({p.file})" in text  # every plot is linked


def test_dead_letters_and_skipped_sources_appear_with_reasons():
    m = {"mixture": "x", "split": "train", "seed": 1, "format": "packed", "layout": "encdec", "num_rows": 3,
         "num_examples": 4, "num_shards": 1, "overlong_policy": "drop", "flanmix_version": "0",
         "feature_spec": "schemas/packed_encdec.features.json", "sequence_length": {"inputs": 8, "targets": 4},
         "vocabulary": {"path": "/v.model", "sha256": "ab" * 32, "vocab_size": 10, "pad_id": 0, "eos_id": 1},
         "packing_efficiency": {"inputs": 0.5, "targets": 0.25}, "dead_letter": {"count": 3, "files": []}, "files": [],
         "datasets": {"a": {"collection": "c", "examples": 4, "inputs_tokens": 9, "targets_tokens": 3, "truncated": 0,
                            "dead_letter": {"render": 2, "tokenize": 1}, "license": "MIT", "languages": ["English"]}},
         "mixing": {"collections": {}, "prompt_settings": {}, "target_examples": 4, "target_tokens": None,
                    "realized_tokens": 12, "downsampled": 5, "upsampled": 0,
                    "few_shot": {"config": {"min_exemplars": 1, "max_exemplars": 2, "pool_size": 4},
                                 "exemplars_per_prompt": {}, "exemplars_dropped_for_length": 0,
                                 "fell_back_to_zero_shot": 0, "exemplars_not_renderable": 0},
                    "skipped_sources": [{"dataset": "gone", "reason": "source /data/gone.tsv not found\nmore"}]}}
    text = card.render_card(m, card_plots.plot_data(m))
    assert _table(text, "## Drops") == [["render", "2", card.STAGE_REASONS["render"]],
                                        ["tokenize", "1", card.STAGE_REASONS["tokenize"]]]
    assert _table(text, "## Skipped sources") == [["gone", "source /data/gone.tsv not found"]]
    assert "Sampled out by the mixture: 5." in text
    assert _front_matter(text)["license"] == "mit" and "--vocab /v.model" in text


# --- plots ------------------------------------------------------------------------------------------

def _segments(table: pa.Table, layout: str) -> tuple[list[int], list[int], dict, list[int]]:
    """Recomputed from the rows alone: inputs and targets tokens per segment, non-pad tokens per row
    per sequence, and the rows' shard-local order is kept by the caller."""
    ins, tgs, nonpad = [], [], {}
    if layout == "decoder":
        seg_rows, loss_rows = table.column("targets_segment_ids").to_pylist(), table.column("loss_mask").to_pylist()
        for seg, loss in zip(seg_rows, loss_rows):
            seg, loss = np.asarray(seg), np.asarray(loss)
            for s in range(1, seg.max(initial=0) + 1):
                ins.append(int(np.sum((seg == s) & (loss == 0))))
                tgs.append(int(np.sum((seg == s) & (loss == 1))))
        nonpad["targets"] = [int(np.count_nonzero(r)) for r in seg_rows]
    else:
        for side, out in (("inputs", ins), ("targets", tgs)):
            rows = table.column(f"{side}_segment_ids").to_pylist()
            for r in rows:
                out.extend(np.bincount(np.asarray(r))[1:].tolist())
            nonpad[side] = [int(np.count_nonzero(r)) for r in rows]
    return ins, tgs, nonpad


def _hist(values: list[int], edges: list[int]) -> list[int]:
    counts = [0] * len(edges)
    for v in values:
        counts[max(i for i, e in enumerate(edges) if v >= e)] += 1
    return counts


@pytest.mark.parametrize("kind", ["encdec", "decoder"])
def test_every_plot_is_a_png_of_the_fixed_size_with_the_rows_data(demo_full, kind):
    directory, plan = demo_full[kind]
    m = _manifest(directory)
    plots = {p.name: p for p in card_plots.plot_data(m)}
    assert tuple(plots) == card_plots.PLOT_NAMES
    for p in plots.values():
        data = (directory / p.file).read_bytes()
        assert card_plots.png_size(data) == card_plots.PIXELS == (800, 450)
        Image.open(io.BytesIO(data)).verify()  # a complete, valid PNG
        assert all(len(values) == len(p.labels) for _, values in p.series)
        assert p.title and p.xlabel and p.ylabel

    cols = plots["collection_shares"]
    assert cols.labels == ("cot", "niv2")
    assert dict(cols.series)["realized"] == tuple(round(100 * m["mixing"]["collections"][c]["realized_share"], 4) for c in cols.labels)

    tasks = plots["examples_per_task"]
    assert len(tasks.labels) == len(m["datasets"]) == 87 and tasks.log_y
    values = dict(tasks.series)["examples"]
    assert sum(values) == m["num_examples"] and list(values) == sorted(values, reverse=True)

    # lengths, fill and per-shard packing, recomputed from the Parquet rows shard by shard
    sides = ("targets",) if kind == "decoder" else ("inputs", "targets")
    all_in, all_tg, fill = [], [], {s: [] for s in sides}
    per_shard = []
    for f in card.data_files(m):
        ins, tgs, nonpad = _segments(pq.read_table(directory / f), kind)
        all_in += ins
        all_tg += tgs
        for s in sides:
            fill[s] += nonpad[s]
        per_shard.append(nonpad)
    edges = list(card_stats.LENGTH_EDGES)
    lengths = plots["example_lengths"]
    assert len(lengths.labels) == len(edges) == 28 and len(lengths.edges) == 29
    assert dict(lengths.series) == {"inputs": tuple(map(float, _hist(all_in, edges))),
                                    "targets": tuple(map(float, _hist(all_tg, edges)))}
    assert sum(dict(lengths.series)["inputs"]) == m["num_examples"]
    row_length = {"targets": plan.decoder_length} if kind == "decoder" else {"inputs": 2048, "targets": 512}
    assert [x for _, x in lengths.marks] == ([2560.0] if kind == "decoder" else [2048.0, 512.0])
    rows = plots["tokens_per_row"]
    assert len(rows.labels) == card_stats.FILL_BINS == 20
    for s in sides:
        expected = Counter(min(n * 20 // row_length[s], 19) for n in fill[s])
        assert dict(rows.series)[s] == tuple(float(expected.get(b, 0)) for b in range(20))
    shards = plots["packing_per_shard"]
    assert shards.labels == ("0", "1")
    for s in sides:
        assert dict(shards.series)[s] == tuple(
            round(100 * round(sum(n[s]) / (len(n[s]) * row_length[s]), 6), 4) for n in per_shard)

    shots = plots["exemplars_per_prompt"]
    assert shots.labels == ("0", "1", "2", "3", "4", "5")  # fixed axis: 0..5 whatever the mixture's range
    k = m["mixing"]["few_shot"]["exemplars_per_prompt"]
    assert dict(shots.series)["prompts"] == tuple(float(k.get(str(i), 0)) for i in range(6))
    # prompts of templates that carry their own shots (NIV2's positive examples) draw none from the pool
    assert 0 < sum(k.values()) <= m["mixing"]["prompt_settings"]["fs_noopt"]["examples"]


def test_a_text_export_has_the_plots_it_has_data_for(demo_full):
    directory, _ = demo_full["text"]
    m = _manifest(directory)
    names = [p.name for p in card_plots.plot_data(m)]
    assert names == ["collection_shares", "examples_per_task"]  # no tokens, and exemplars are never fitted
    assert sorted(p.name for p in (directory / "card").iterdir()) == sorted(f"{n}.png" for n in names)


# --- flanmix card ------------------------------------------------------------------------------------

def test_flanmix_card_rewrites_the_builds_card_byte_for_byte(demo_full, tmp_path, capsys):
    import shutil

    directory, _ = demo_full["encdec"]
    copy = tmp_path / "corpus"
    shutil.copytree(directory, copy)
    built = {p: (copy / p).read_bytes() for p in ["README.md"] + [f"card/{n}.png" for n in card_plots.PLOT_NAMES]}
    shutil.rmtree(copy / "card")
    (copy / "README.md").unlink()
    (copy / "card").mkdir()
    (copy / "card" / "input_lengths.png").write_bytes(b"stale")  # a plot this card does not have
    (copy / "card" / "example_lengths.png").write_bytes(b"old")
    assert main(["card", str(copy)]) == 0
    assert "README.md" in capsys.readouterr().out
    assert {p: (copy / p).read_bytes() for p in built} == built
    assert (copy / "card" / "input_lengths.png").exists()  # not ours to delete: only PLOT_NAMES are
    assert main(["card", str(tmp_path / "nothing")]) == 2


def test_the_card_is_staged_and_verified_before_the_manifest(demo_full, tmp_path, vocab, monkeypatch):
    """A commit that dies while the card is being staged publishes nothing: no manifest, no card."""
    from pipelines.publish import staging as publish
    from pipelines.publish import verify
    from pipelines.runner.graph import run_build

    _, plan = demo_full["encdec"]
    calls = []

    def broken(staging, written):
        calls.append(written.path)
        if written.path == "README.md":
            raise publish.PublishError("staged file README.md: simulated mismatch")
        return verify.verify_file(staging, written)

    original = card.stage_card
    monkeypatch.setattr(card, "stage_card", lambda manifest, staging, verify: original(manifest, staging, broken))
    out = tmp_path / "out"
    with pytest.raises(Exception, match="simulated mismatch"):
        run_build(plan, vocab.model_proto, str(out), ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    assert calls and calls[-1] == "README.md" and calls[0].startswith("card/")
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists() and not (out / "card").exists()


def _pixels(plot) -> Image.Image:
    return Image.open(io.BytesIO(card_plots.render_png(plot))).convert("RGB")


def test_bars_are_drawn_to_their_values_on_the_fixed_axes():
    """The renderer itself, read back pixel by pixel: each bar's top is where its value falls on the
    fixed axes, in its series' colour, and nothing is drawn above it."""
    plot = card_plots.PlotData("collection_shares", "t", "x", "y", ("a", "b"), (("target", (50.0, 25.0)),), y_max=100.0)
    image = _pixels(plot)
    left, top, right, bottom = card_plots.BOX
    span = right - left
    for j, value in enumerate((50.0, 25.0)):
        x = round(left + (j + 0.6) / 2.2 * span)  # the bar's centre on the axis from -0.6 to n - 0.4
        y_top = round(bottom - value / 100.0 * (bottom - top))
        assert image.getpixel((x, y_top + 2)) == card_plots.COLORS[0]
        assert image.getpixel((x, (y_top + bottom) // 2)) == card_plots.COLORS[0]
        assert image.getpixel((x, y_top - 3)) != card_plots.COLORS[0]
    # a series value of 0 draws no bar, and two renders of the same data are the same bytes
    empty = _pixels(card_plots.PlotData("c", "t", "x", "y", ("a",), (("s", (0.0,)),), y_max=100.0))
    assert card_plots.COLORS[0] not in {empty.getpixel((x, bottom - 5)) for x in range(left + 2, right - 2)}
    assert card_plots.render_png(plot) == card_plots.render_png(plot)


def test_histograms_sit_on_their_bin_edges_on_a_log_axis_with_the_marks():
    edges = (1.0, 8.0, 64.0, 512.0, 131072.0)
    plot = card_plots.PlotData("example_lengths", "t", "x", "y", ("a", "b", "c", "d"), (("inputs", (0.0, 10.0, 0.0, 0.0)),),
                               edges=edges, marks=(("inputs length", 512.0),))
    image = _pixels(plot)
    left, top, right, bottom = card_plots.BOX

    def x_of(v):
        import math
        return left + math.log(v) / math.log(131072) * (right - left)

    inside = [image.getpixel((round(x), bottom - 10)) for x in (x_of(9), x_of(30), x_of(60))]
    assert len(set(inside)) == 1 and inside[0] != (255, 255, 255)  # one translucent fill across the bin
    assert image.getpixel((round(x_of(6)), bottom - 10)) == (255, 255, 255)  # the empty bin on its left
    assert image.getpixel((round(x_of(70)), bottom - 10)) == (255, 255, 255)  # and on its right
    mark = round(x_of(512))
    assert card_plots.COLORS[0] in {image.getpixel((mark + d, y)) for d in (-1, 0, 1) for y in range(top + 40, top + 60)}


def test_drawing_the_card_imports_no_plotting_library(demo_full):
    """The six plots of a real manifest, drawn in a fresh interpreter, leave matplotlib unimported
    (it had cost every build ~0.5 s of wall time and ~2 s of CPU) and give the build's own bytes."""
    import subprocess
    import sys

    directory, _ = demo_full["encdec"]
    code = ("import sys, json; from pipelines.publish import card_plots as c; "
            "m = json.load(open(sys.argv[1])); d = {p.file: c.render_png(p) for p in c.plot_data(m)}; "
            "print(len(d), 'matplotlib' in sys.modules); sys.stdout.flush(); "
            "[sys.stdout.buffer.write(d[k]) for k in sorted(d)]")
    out = subprocess.run([sys.executable, "-c", code, str(directory / "manifest.json")], capture_output=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    head, _, body = out.partition(b"\n")
    assert head == b"6 False"
    assert body == b"".join((directory / f"card/{n}.png").read_bytes() for n in sorted(card_plots.PLOT_NAMES))
