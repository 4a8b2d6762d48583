"""`--formats`: a build writes only the packed files it is asked for, byte for byte the files a
both-formats build writes, and says so in its manifest and card; bad values fail before launch."""
from __future__ import annotations

import json

import pytest
import yaml

from buildkit import digest_tree, small_plan
from pipelines.errors import FlanmixError
from pipelines.formats.file_formats import parse_formats
from pipelines.runner.graph import run_build


def test_parse_formats_accepts_either_order_and_rejects_unknowns():
    assert parse_formats(None) == ("tfrecord", "parquet")
    assert parse_formats("parquet,tfrecord") == ("tfrecord", "parquet")
    assert parse_formats(" parquet ") == ("parquet",)
    with pytest.raises(FlanmixError, match="unknown: orc"):
        parse_formats("parquet,orc")
    with pytest.raises(FlanmixError, match="use one or both"):
        parse_formats(",")


def test_bad_formats_fail_when_the_plan_is_made(tmp_path, catalog, families, vocab):
    with pytest.raises(FlanmixError, match="unknown: json"):
        small_plan(tmp_path, catalog, families, vocab, file_formats="json")
    with pytest.raises(FlanmixError, match="--format jsonl"):
        small_plan(tmp_path, catalog, families, vocab, file_formats="parquet", output_format="jsonl")


@pytest.fixture(scope="module")
def three_builds(tmp_path_factory, catalog, families, vocab):
    """The small mixture (2 shards) built with both formats, Parquet only and TFRecord only."""
    out = {}
    for name, formats in (("both", None), ("parquet", "parquet"), ("tfrecord", "tfrecord")):
        directory = tmp_path_factory.mktemp(f"formats_{name}")
        plan = small_plan(directory, catalog, families, vocab, file_formats=formats)
        run_build(plan, vocab.model_proto, str(directory / "out"), [])
        out[name] = directory / "out"
    return out


@pytest.mark.parametrize("only", ["parquet", "tfrecord"])
def test_one_format_writes_exactly_those_files_of_the_both_build(three_builds, only):
    both, one = digest_tree(three_builds["both"]), digest_tree(three_builds[only])
    other = "tfrecord" if only == "parquet" else "parquet"
    shards = {p: h for p, h in both.items() if p.startswith(f"{only}/")}
    assert len(shards) == 2  # the shard series is complete
    assert {p: h for p, h in one.items() if p.startswith(f"{only}/")} == shards  # same bytes
    assert not any(p.startswith(f"{other}/") for p in one)
    manifest = json.loads((three_builds[only] / "manifest.json").read_text())
    assert manifest["formats"] == [only]
    assert {f["path"] for f in manifest["files"] if not f["path"].startswith("dead_letter/")} == set(shards)
    assert manifest["num_rows"] == json.loads((three_builds["both"] / "manifest.json").read_text())["num_rows"]
    card = (three_builds[only] / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert ("configs" in front) == (only == "parquet")  # load_dataset reads Parquet, nothing else
    assert f"--formats {only}" in card  # the rebuild command


def test_default_build_manifest_has_no_formats_key(three_builds):
    """A default build's manifest is byte-identical to one made before `--formats` existed."""
    assert "formats" not in json.loads((three_builds["both"] / "manifest.json").read_text())


def test_cli_refuses_an_unknown_format_before_loading_and_dry_run_names_the_series(tmp_path, capsys):
    from pipelines.cli import main

    assert main(["build", "--mixture", "demo", "--output", str(tmp_path / "x"), "--formats", "orc"]) != 0
    assert "--formats orc" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["build", "--mixture", "demo", "--output", str(tmp_path / "y"), "--formats", "parquet", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "shards:   parquet/demo-train-00000-of-00001.parquet" in out and "tfrecord/" not in out
