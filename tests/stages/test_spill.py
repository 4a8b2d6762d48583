"""Spilling the shuffle to sorted run files (local runner): the merge gives exactly the full sort."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that

from pipelines.records import ShardItem
from pipelines.runner import beam_options, graph
from pipelines.stages import spill
from pipelines.stages.pack import order_shard, shard_order_key

from buildkit import small_plan

ITEMS = {
    0: [ShardItem(7, b"\x01\x00\x00\x00", b"\x01\x00\x00\x00", "a|t|s|r2"),
        ShardItem(3, b"\x05\x00\x00\x00", b"\x01\x00\x00\x00", "a|t|s|r1"),
        ShardItem(7, b"\x02\x00\x00\x00", b"\x01\x00\x00\x00", "a|t|s|r0")],
    2: [ShardItem(1, b"\x09\x00\x00\x00", b"\x01\x00\x00\x00", "b|t|s|r9")],
}


def test_runs_round_trip_and_merge_like_a_full_sort(tmp_path):
    first = spill.write_runs(str(tmp_path / "a.runs"), {s: sorted(v, key=shard_order_key) for s, v in ITEMS.items()})
    second = spill.write_runs(str(tmp_path / "b.runs"), {0: [ShardItem(5, b"", b"", "c|t|s|r5")]})
    assert sorted(first) == [0, 2] and first[2].offset == first[0].length and first[0].items == 3
    assert list(spill.read_run(first[2])) == ITEMS[2]
    merged = list(spill.merge_runs([second[0], first[0]], shard_order_key))
    assert [m[3] for m in merged] == ["a|t|s|r1", "c|t|s|r5", "a|t|s|r0", "a|t|s|r2"]
    # order_shard takes runs and in-memory batches alike
    examples = list(order_shard([second[0], ITEMS[0]]))
    assert [e.provenance for e in examples] == ["a|t|s|r1", "c|t|s|r5", "a|t|s|r0", "a|t|s|r2"]
    assert examples[0].inputs.tolist() == [5]


def test_spill_fn_sends_references_whose_merge_is_the_sorted_input(tmp_path):
    batches = [(0, ITEMS[0][:1]), (2, ITEMS[2]), (0, ITEMS[0][1:])]

    def check(refs):
        by_shard: dict = {}
        for shard, run in refs:
            assert isinstance(run, spill.Run) and run.path.startswith(str(tmp_path / spill.RUNS_DIR))
            by_shard.setdefault(shard, []).append(run)
        assert len(by_shard[0]) == 2  # the 1-byte budget flushed after every batch
        for shard, runs in by_shard.items():
            assert list(spill.merge_runs(runs, shard_order_key)) == sorted(ITEMS[shard], key=shard_order_key)

    with beam.Pipeline(options=beam_options.pipeline_options(["--direct_running_mode=in_memory"])) as p:
        refs = p | beam.Create(batches, reshuffle=False) | beam.ParDo(spill.SpillRunsFn(str(tmp_path), shard_order_key, budget_bytes=1))
        assert_that(refs, check)


def test_only_the_local_runner_spills(tmp_path, catalog, families, vocab):
    plan = small_plan(tmp_path, catalog, families, vocab)

    def labels(args):
        pipeline = beam.Pipeline(options=beam_options.pipeline_options(args))
        graph.construct(pipeline, plan, vocab.model_proto, "gs://flanmix-bucket/out")
        return {t.full_label for t in pipeline.transforms_stack[0].parts for t in [t, *t.parts]}

    assert "Pack/SpillRuns" in labels([])
    assert "Pack/SpillRuns" not in labels(["--runner=DataflowRunner", "--project=flanmix-test", "--region=us-central1",
                                           "--temp_location=gs://flanmix-bucket/tmp", "--dry_run=True"])
