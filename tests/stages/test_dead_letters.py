"""Dead letters are written in shards by the workers that hold them (stages/dead_letters.py), never
joined on one worker: the series is complete, every record is in exactly one file, the manifest
counts them exactly, and the bytes depend only on the records (not on their arrival order)."""
from __future__ import annotations

import dataclasses
import json
import random

import apache_beam as beam

from pipelines import counters
from pipelines.definitions.catalog import load_catalog
from pipelines.definitions.mixtures import load_mixture
from pipelines.definitions.templates import load_templates
from pipelines.planning.plan import BuildOptions, make_plan
from pipelines.records import dead_letter
from pipelines.runner.graph import run_build
from pipelines.stages.dead_letters import WriteDeadLetters, shard_path
from pipelines.stages.finish import finish_corpus
from tests.test_bad_input import GOOD_ROWS, toy_project


def _records(n: int) -> list[dict]:
    out = [dead_letter(f"ds{i % 3}", f"train:{i}", "render" if i % 2 else "read", f"reason {i}", "raw" if i % 5 == 0 else None)
           for i in range(n)]
    out.append(dead_letter("ds0", "train:0", "read", "a second reason for the same key"))  # ties sort by line
    return out


def _write(records: list[dict], directory, count: int) -> list:
    with beam.Pipeline() as p:
        reports = (p | beam.Create(records, reshuffle=False) | WriteDeadLetters(7, count, str(directory)))
        reports | beam.Map(lambda r: None)
    return sorted(directory.rglob("*.jsonl"))


def test_shards_hold_every_record_once_sorted_and_their_bytes_ignore_arrival_order(tmp_path):
    records = _records(60)
    first = _write(records, tmp_path / "a", 4)
    shuffled = list(records)
    random.Random(3).shuffle(shuffled)
    second = _write(shuffled, tmp_path / "b", 4)
    assert [p.name for p in first] == [f"dead_letter-0000{i}-of-00004.jsonl" for i in range(4)]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    lines = [line for p in first for line in p.read_text().splitlines()]
    assert sorted(lines) == sorted(json.dumps(r, sort_keys=True) for r in records)
    for p in first:  # each file sorted by (dataset, row id, stage), then by the line
        rows = [json.loads(x) for x in p.read_text().splitlines()]
        keys = [((r["dataset"], r["row_id"], r["stage"]), json.dumps(r, sort_keys=True)) for r in rows]
        assert keys == sorted(keys) and len(rows) > 5


def test_build_writes_a_complete_series_and_the_manifest_counts_exactly(tmp_path, vocab):
    rows = GOOD_ROWS + "".join(f"Broken row {i}\t\tNo answer here.\n" for i in range(30)) + "only one column\n"
    cat_dir, tpl_dir, mixture_path = toy_project(tmp_path, rows)
    plan = make_plan(load_mixture(mixture_path), load_catalog(cat_dir), load_templates(tpl_dir), vocab, BuildOptions(num_shards=1))
    assert plan.dead_letter_shards == 1  # one per 64 MiB of source
    wide = dataclasses.replace(plan, dead_letter_shards=5)
    out_one, out_five = tmp_path / "one", tmp_path / "five"
    run_build(plan, vocab.model_proto, str(out_one))
    run_build(wide, vocab.model_proto, str(out_five))
    manifest = json.loads((out_five / "manifest.json").read_text())
    assert manifest["dead_letter"]["files"] == [shard_path(i, 5) for i in range(5)]
    assert manifest["dead_letter"]["count"] == 31
    assert manifest["datasets"]["toy_qa"]["dead_letter"] == {"read": 1, "render": 30}
    in_five = sorted(line for i in range(5) for line in (out_five / shard_path(i, 5)).read_text().splitlines())
    in_one = (out_one / shard_path(0, 1)).read_text().splitlines()
    assert in_five == sorted(in_one) and len(in_one) == 31
    assert all((out_five / shard_path(i, 5)).exists() for i in range(5))  # empty ones too


def test_finish_completes_the_series_with_empty_files(tmp_path):
    from pipelines.planning.slices import OutputSlice
    from pipelines.records import Report
    from pipelines.stages.dead_letters import write_dead_letter_shard

    class Plan:  # what finish_corpus reads, for a jsonl build of one shard with 3 dead-letter shards
        mixture, split, num_shards, layout, output_format = "m", "train", 1, "encdec", "jsonl"
        max_dead_letter_fraction, dead_letter_shards = 1.0, 3
        inputs_length, targets_length, decoder_length = 8, 8, 0
        seed, few_shot, datasets = 0, None, {}

    written = write_dead_letter_shard(1, _records(4), 3, str(tmp_path))
    assert written.counts[counters.DEAD_LETTERS.key("ds0", "read")] == 2
    report = finish_corpus(Report(dict(written.counts), written.files), Plan(), str(tmp_path))
    paths = [f.path for f in report.files if f.path.startswith("dead_letter/")]
    assert paths == [shard_path(i, 3) for i in range(3)]
    assert [f.num_rows for f in report.files if f.path.startswith("dead_letter/")] == [0, 5, 0]
    assert {f.name for f in OutputSlice.__dataclass_fields__.values()} >= {"dead_letter_shards"}
