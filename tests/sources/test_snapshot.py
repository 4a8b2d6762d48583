"""Source snapshots end to end: a mixture over local sources in every loader's real format is
snapshotted by the real Beam job, built from the snapshot (with the sources moved away) and compared
with a build from the sources themselves, byte for byte."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipelines.definitions.catalog import load_catalog
from pipelines.definitions.mixtures import load_mixture
from pipelines.definitions.templates import load_templates
from pipelines.errors import LoaderError
from pipelines.loaders import get_loader
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.runner.graph import run_build
from pipelines.sources import check
from pipelines.sources.loader import SnapshotLoader
from pipelines.sources.manifest import SnapshotError, load
from pipelines.sources.snapshot import plan_snapshot, run_snapshot

from buildkit import digest_tree
from emulators import gcs_server, s3_server  # noqa: F401 - fixtures
from world import make_world

IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def typed(value):
    """A value with the type of every part spelled out, so 1 == 1.0 and True == 1 do not pass."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


@pytest.fixture(scope="module")
def world(tmp_path_factory, vocab):
    base = tmp_path_factory.mktemp("snapshot_world")
    paths = make_world(base)
    catalog = load_catalog(paths["catalog"])
    families = {**load_templates(), **load_templates(paths["templates"])}
    mixture = load_mixture(paths["mixture"])
    return {**paths, "base": base, "catalog_obj": catalog, "families": families, "mixture_obj": mixture}


def build(world, vocab, out: Path, beam_args=(), **options):
    plan = make_plan(world["mixture_obj"], world["catalog_obj"], world["families"], vocab,
                     BuildOptions(num_shards=2, **options))
    run_build(plan, vocab.model_proto, str(out), list(beam_args) or IN_MEMORY)
    return plan


@pytest.fixture(scope="module")
def snapshot_and_direct(world, vocab):
    """(snapshot root, the direct build's directory): the snapshot is taken, then the direct build runs."""
    root = world["base"] / "snap"
    run_snapshot(plan_snapshot(world["mixture_obj"], world["catalog_obj"], str(root)), IN_MEMORY)
    direct = world["base"] / "direct"
    build(world, vocab, direct)
    return root, direct


def without_snapshot_hash(manifest: dict) -> dict:
    manifest = json.loads(json.dumps(manifest))
    manifest["provenance"].pop("sources_snapshot", None)
    return manifest


def assert_same_corpus(direct: Path, other: Path, snapshot_sha: str) -> None:
    a, b = digest_tree(direct), digest_tree(other)
    assert {k: v for k, v in a.items() if k != "manifest.json"} == {k: v for k, v in b.items() if k != "manifest.json"}
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (direct, other))
    assert "sources_snapshot" not in ma["provenance"]
    assert mb["provenance"]["sources_snapshot"] == {"sha256": snapshot_sha}
    assert without_snapshot_hash(mb) == ma


def test_sources_json_lists_every_source_with_counts_hashes_and_the_failure(snapshot_and_direct, world):
    root, _ = snapshot_and_direct
    snap = load(str(root))
    s = snap.sources
    assert sorted(s) == ["cot_tsv", "hf_json", "hf_saved", "missing_tfds", "niv2_task", "tiny_tfds", "toy_jsonl"]
    assert s["missing_tfds"]["status"] == "failed" and "flanmix_not_prepared" in s["missing_tfds"]["reason"]
    assert "shards" not in s["missing_tfds"]
    assert {n: v["rows"] for n, v in s.items() if v["status"] == "ok"} == {
        "cot_tsv": {"train": 4}, "hf_json": {"train": 5}, "hf_saved": {"train": 4}, "niv2_task": {"train": 8},
        "tiny_tfds": {"train": 3}, "toy_jsonl": {"train": 4}}
    assert s["toy_jsonl"]["dead_letters"] == {"train": 1} and s["cot_tsv"]["dead_letters"] == {"train": 1}
    assert [sh["index"] for sh in s["tiny_tfds"]["shards"]] == [0, 1]  # one file per planned shard (2 rows each)
    assert [sh["index"] for sh in s["hf_saved"]["shards"]] == [0, 1]
    assert "tensorflow-datasets" in s["tiny_tfds"]["library_versions"]
    assert "datasets" in s["hf_saved"]["library_versions"]
    tfds_files = s["tiny_tfds"]["source_files"]
    assert tfds_files and all(len(h) == 64 for h in tfds_files.values())
    assert list(s["cot_tsv"]["source_files"]) == [str(world["sources"] / "cot.tsv")]
    assert check.verify_snapshot(str(root))[1] == []


def test_rows_round_trip_exactly(snapshot_and_direct, world):
    """Every loader's rows (ids, order, values with their types, dead letters) come back unchanged."""
    root, _ = snapshot_and_direct
    snap = load(str(root))
    for name, source in snap.sources.items():
        if source["status"] != "ok":
            continue
        entry = world["catalog_obj"][name]
        loader = get_loader(entry.loader_type)
        direct = [r for sh in loader.plan(name, "train", entry.splits["train"], entry.loader_args) for r in loader.read(sh)]
        from pipelines.sources.loader import listing, plan_entry

        shards = plan_entry(snap, entry, "train", listing(snap))
        back = [r for sh in shards for r in SnapshotLoader().read(sh)]
        assert [(r.row_id, typed(r.fields), r.error, r.raw) for r in back] == \
               [(r.row_id, typed(r.fields), r.error, r.raw) for r in direct], name


def test_build_from_snapshot_is_byte_identical_elsewhere_without_the_sources(snapshot_and_direct, world, vocab, tmp_path):
    """The snapshot and the catalog copied to another place, the sources gone: the same corpus."""
    root, direct = snapshot_and_direct
    elsewhere = tmp_path / "offline_machine"
    for part in ("catalog", "templates", "snap"):
        shutil.copytree(world["base"] / part, elsewhere / part)
    moved = {**world, "catalog_obj": load_catalog(elsewhere / "catalog"),
             "families": {**load_templates(), **load_templates(elsewhere / "templates")}}
    hidden = world["base"] / "sources_hidden"
    os.rename(world["sources"], hidden)  # nothing but the snapshot is readable now
    try:
        out = world["base"] / "from_snapshot"
        plan = build(moved, vocab, out, sources=str(elsewhere / "snap"))
        assert all(s.loader_type == "snapshot" for s in plan.sources) and len(plan.sources) == 8
        assert dict(plan.skipped)["missing_tfds"] == load(str(root)).sources["missing_tfds"]["reason"]
        assert_same_corpus(direct, out, load(str(root)).sha256)
    finally:
        os.rename(hidden, world["sources"])


def test_a_stale_entry_is_skipped_with_the_reason(snapshot_and_direct, world, vocab):
    import dataclasses

    from pipelines.definitions.catalog import Catalog

    root, _ = snapshot_and_direct
    entries = dict(world["catalog_obj"].entries)
    entries["toy_jsonl"] = dataclasses.replace(entries["toy_jsonl"], splits={"train": "train[:2]"})
    plan = make_plan(world["mixture_obj"], Catalog(entries), world["families"], vocab, BuildOptions(sources=str(root)))
    assert "was made with source_split 'train', the catalog now says 'train[:2]'" in dict(plan.skipped)["toy_jsonl"]
    with pytest.raises(LoaderError, match="--strict"):
        make_plan(world["mixture_obj"], Catalog(entries), world["families"], vocab, BuildOptions(sources=str(root), strict=True))


def test_rerun_fetches_only_what_changed_and_diff_says_what(snapshot_and_direct, world, tmp_path):
    root, _ = snapshot_and_direct
    copy = tmp_path / "snap_v2"
    shutil.copytree(root, copy)
    again = plan_snapshot(world["mixture_obj"], world["catalog_obj"], str(copy))
    assert again.jobs == () and sorted(again.kept) == ["cot_tsv", "hf_json", "hf_saved", "niv2_task", "tiny_tfds", "toy_jsonl"]
    toy = world["sources"] / "toy.jsonl"
    original = toy.read_text(encoding="utf-8")
    try:
        lines = original.splitlines()
        lines[0] = json.dumps({"q": "2+2?", "a": "four", "x": 1.0, "tags": ["math"], "extra": None})  # x: int -> float
        lines.append(json.dumps({"q": "New?", "a": "yes", "x": 2, "tags": [], "hint": "h"}))
        toy.write_text("\n".join(lines) + "\n", encoding="utf-8")
        plan = plan_snapshot(world["mixture_obj"], world["catalog_obj"], str(copy))
        assert [j.dataset for j in plan.jobs] == ["toy_jsonl"]
        old_files = [sh["path"] for sh in load(str(copy)).sources["toy_jsonl"]["shards"]]
        run_snapshot(plan, IN_MEMORY)
    finally:
        toy.write_text(original, encoding="utf-8")
    new = load(str(copy))
    assert new.sources["toy_jsonl"]["rows"] == {"train": 5}
    assert not any((copy / p).exists() for p in old_files)  # the replaced copy is gone
    assert check.verify_snapshot(str(copy))[1] == []
    diffs = {d.dataset: d for d in check.diff_snapshots(str(root), str(copy))}
    assert {n for n, d in diffs.items() if d.differs} == {"toy_jsonl"} and diffs["missing_tfds"].status == "failed"
    detail = "\n".join(diffs["toy_jsonl"].detail)
    assert "train: 4 -> 5 rows, 1 added, 0 removed, 1 changed" in detail
    assert "fields added: hint" in detail and "fields changed: a in 1 rows, x in 1 rows" in detail


def test_strict_fails_before_writing(world, tmp_path):
    root = tmp_path / "strict"
    with pytest.raises(LoaderError, match="--strict: source missing_tfds .*nothing was written"):
        plan_snapshot(world["mixture_obj"], world["catalog_obj"], str(root), strict=True)
    assert not root.exists()


def test_a_source_failing_while_read_is_listed_and_strict_publishes_nothing(world, tmp_path, monkeypatch):
    from pipelines.loaders.cot_tsv import CotTsvLoader

    def broken(self, shard):
        raise OSError("disk went away")
        yield

    monkeypatch.setattr(CotTsvLoader, "read", broken)
    root = tmp_path / "readfail"
    run_snapshot(plan_snapshot(world["mixture_obj"], world["catalog_obj"], str(root)), IN_MEMORY)
    s = load(str(root)).sources
    assert s["cot_tsv"]["status"] == "failed" and "OSError: disk went away" in s["cot_tsv"]["reason"]
    assert s["toy_jsonl"]["status"] == "ok"
    strict_root = tmp_path / "readfail_strict"
    two = tmp_path / "two.yaml"
    two.write_text("schema_version: 1\nname: two\nmembers: [{dataset: cot_tsv}, {dataset: toy_jsonl}]\n", encoding="utf-8")
    plan = plan_snapshot(load_mixture(two), world["catalog_obj"], str(strict_root), strict=True)
    with pytest.raises(Exception, match="--strict: source cot_tsv could not be fetched"):
        run_snapshot(plan, IN_MEMORY)
    assert not (strict_root / "sources.json").exists() and not (strict_root / "data").exists()


def test_tampered_file_fails_verify_and_the_build_naming_it(snapshot_and_direct, world, vocab, tmp_path):
    root, _ = snapshot_and_direct
    copy = tmp_path / "tampered"
    shutil.copytree(root, copy)
    victim = copy / load(str(copy)).sources["toy_jsonl"]["shards"][0]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    victim.write_bytes(bytes(data))
    _, problems = check.verify_snapshot(str(copy))
    assert len(problems) == 1 and str(victim) in problems[0] and "sha256" in problems[0]
    from pipelines.cli import main

    assert main(["sources", "verify", str(copy)]) == 1
    with pytest.raises(Exception, match=f"snapshot file {victim} has sha256"):
        build(world, vocab, tmp_path / "out", sources=str(copy))
    victim.write_bytes(bytes(data[:-10]))  # shorter: refused before the job starts
    with pytest.raises(SnapshotError, match=f"snapshot file {victim} has {len(data) - 10} bytes"):
        make_plan(world["mixture_obj"], world["catalog_obj"], world["families"], vocab, BuildOptions(sources=str(copy)))


def test_cli_verify_and_diff(snapshot_and_direct, capsys):
    from pipelines.cli import main

    root, _ = snapshot_and_direct
    assert main(["sources", "verify", str(root)]) == 0
    assert "sources verify: OK (7 sources, 8 files" in capsys.readouterr().out
    assert main(["sources", "diff", str(root), str(root), "--exit-code"]) == 0
    assert "0 of 7 source(s) differ" in capsys.readouterr().out


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_snapshot_to_a_bucket_and_build_from_there(store, request, snapshot_and_direct, world, vocab):
    """The snapshot job writes to the S3 / GCS emulator, a re-run there fetches nothing, and a build
    reading only the bucket equals the direct build byte for byte."""
    from pipelines.runner import beam_options

    server = request.getfixturevalue("s3_server" if store == "s3" else "gcs_server")
    scheme = "s3" if store == "s3" else "gs"
    args = IN_MEMORY + (server.beam_args if store == "s3" else [])
    beam_options.set_filesystem_options(args)
    root = f"{scheme}://{server.bucket}/snapshots/world"
    run_snapshot(plan_snapshot(world["mixture_obj"], world["catalog_obj"], root), args)
    snap = load(root)
    local = load(str(snapshot_and_direct[0]))
    assert {n: s.get("rows") for n, s in snap.sources.items()} == {n: s.get("rows") for n, s in local.sources.items()}
    assert check.verify_snapshot(root)[1] == []
    assert plan_snapshot(world["mixture_obj"], world["catalog_obj"], root).jobs == ()
    keys = _bucket_keys(server, store, "snapshots/world/")
    listed = {"snapshots/world/" + sh["path"] for s in snap.sources.values() for sh in s.get("shards", [])}
    assert set(keys) == listed | {"snapshots/world/sources.json"}  # no staging left, nothing unlisted
    out = world["base"] / f"from_{store}"
    build(world, vocab, out, args, sources=root)
    assert_same_corpus(snapshot_and_direct[1], out, snap.sha256)


def _bucket_keys(server, store: str, prefix: str) -> list[str]:
    if store == "s3":
        return [o["Key"] for o in server.client().list_objects_v2(Bucket=server.bucket, Prefix=prefix).get("Contents", [])]
    return [b.name for b in server.client().bucket(server.bucket).list_blobs(prefix=prefix)]


def test_a_plan_from_the_snapshot_estimates_and_sizes_as_from_the_sources(snapshot_and_direct, world, vocab):
    """shard_count's row estimate (loader counts, head-of-file row sizes) and the survey's fast counts
    come from sources.json, not from the snapshot's Parquet: the same output and dead-letter shards."""
    from pipelines.planning import shard_count

    root, _ = snapshot_and_direct
    direct, snap = (make_plan(world["mixture_obj"], world["catalog_obj"], world["families"], vocab, BuildOptions(**o))
                    for o in ({}, {"sources": str(root)}))
    assert shard_count.estimated_rows(snap.sources) == shard_count.estimated_rows(direct.sources)
    assert (snap.num_shards, snap.dead_letter_shards) == (direct.num_shards, direct.dead_letter_shards)
    hf = [s for s in snap.sources if s.dataset == "hf_saved"]
    assert [SnapshotLoader().count_rows(s) for s in hf] == [2, 2]  # hf_datasets counts from metadata
    assert all(SnapshotLoader().count_rows(s) is None for s in snap.sources if s.dataset == "toy_jsonl")
