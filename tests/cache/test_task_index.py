"""The task layer of `--cache` step by step, on its DoFns: a task that cannot be keyed is read every
build and never indexed; an index is written only from complete, stored parts and lists what they
stored; the gate replays an index only when every entry it lists is intact. (End to end, with the
real job, in test_cache_build.py.)"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
from pipelines import counters
from pipelines.cache import keys, store
from pipelines.cache.stage import GatedShard, StoreTaskIndexFn, TaskGateFn, TaskPart
from pipelines.loaders import SourceShard
from pipelines.planning.sampling import SamplingTable, TaskSampling
from pipelines.records import STATS, new, ShardItem, ShardItems

TASK = "task_a"
EXEMPLARS = SimpleNamespace(few_shot=SimpleNamespace(group_size=16))  # what the gate reads of an ExemplarSlice
TABLE = SamplingTable(target=10, tasks={TASK: TaskSampling(TASK, "cot", 1.0, 40, 1.0, (("fs_noopt", 1.0),))}, pools={})


def _outputs(gen):
    main, tagged = [], {}
    for out in gen:
        if isinstance(out, beam.pvalue.TaggedOutput):
            tagged.setdefault(out.tag, []).append(out.value)
        else:
            main.append(out)
    return main, tagged


def _counts(tagged) -> dict:
    merged: dict = {}
    for report in tagged.get(STATS, []):
        for k, v in report.counts.items():
            merged[k] = merged.get(k, 0) + v
    return merged


def _files(tmp_path: Path) -> list[SourceShard]:
    shards = []
    for i, text in enumerate(("q1\tr1\ta1\n", "q2\tr2\ta2\n")):
        path = tmp_path / f"part{i}.tsv"
        path.write_text(text)
        shards.append(SourceShard(TASK, "train", "cot_tsv", {"path": str(path)}, index=i))
    return shards


def _store_entry(cache: str, key: str, shard: int = 0) -> None:
    writer = store.EntryWriter(cache, key, {"format": keys.FORMAT_VERSION, "dataset": TASK, "source": "test"})
    writer.items(shard, ShardItems([new(ShardItem, (7, b"\x01\x00\x00\x00", b"\x02\x00\x00\x00", f"{TASK}|t|fs_noopt|k"))]))
    writer.counts({counters.RENDERED_EXAMPLES.key(TASK): 1})
    writer.commit()


def test_a_task_with_a_shard_that_has_no_single_file_is_read_and_never_indexed(tmp_path):
    shards = [SourceShard(TASK, "train", "hf", {"dir": str(tmp_path)}, index=i) for i in (1, 0)]
    main, tagged = _outputs(TaskGateFn(EXEMPLARS, str(tmp_path / "cache"), {TASK: "k"}).process((TASK, shards), TABLE))
    assert main == [GatedShard(shards[1], None, None), GatedShard(shards[0], None, None)]  # in shard order, no key
    assert not tagged  # neither a task hit nor a miss: its files count `uncacheable` when read
    StoreTaskIndexFn(str(tmp_path / "cache")).process((TASK, [TaskPart(entry="g1"), TaskPart(entry="g2")]))
    assert not (tmp_path / "cache").exists()


def test_the_index_is_stored_only_when_every_part_is_ok_and_then_replayed(tmp_path):
    cache = str(tmp_path / "cache")
    shards = _files(tmp_path)
    gate = TaskGateFn(EXEMPLARS, cache, {TASK: "k"})
    main, tagged = _outputs(gate.process((TASK, shards), TABLE))
    assert [g.shard for g in main] == shards and len({g.task_entry for g in main}) == 1
    assert _counts(tagged) == {counters.CACHE_TASK_MISSES.key(TASK): 1}
    index_key = main[0].task_entry
    assert main[0].source_sha256 == keys.file_sha256(shards[0].args["path"])
    for k in ("g1", "g2"):
        _store_entry(cache, k)
    read = lambda n: ((counters.READ.key(TASK), n),)  # noqa: E731
    parts = [TaskPart(task_entry=index_key, read_counts=read(1)), TaskPart(task_entry=index_key, read_counts=read(1)),
             TaskPart(entry="g2"), TaskPart(entry="g1")]
    StoreTaskIndexFn(cache).process((TASK, parts[:-1] + [TaskPart(entry="g1", ok=False)]))  # a group not stored
    assert store.load(cache, index_key, "index") == (None, False)
    StoreTaskIndexFn(cache).process((TASK, [TaskPart(task_entry=index_key, read_counts=read(1), ok=False)] + parts[1:]))
    assert store.load(cache, index_key, "index") == (None, False)  # a file changed while it was read
    StoreTaskIndexFn(cache).process((TASK, parts))
    index, _ = store.load(cache, index_key, "index")
    assert [f for f in index.frames if f[0] == "K"] == [("K", ["g1", "g2"])]
    assert [f for f in index.frames if f[0] == "R"] == [("R", {counters.READ.key(TASK): 2})]

    main, tagged = _outputs(gate.process((TASK, list(reversed(shards))), TABLE))
    assert main == [] and len(tagged["tokenized"]) == 2  # both groups' examples, no shard left to read
    assert _counts(tagged) == {counters.READ.key(TASK): 2, counters.RENDERED_EXAMPLES.key(TASK): 2, counters.CACHE_TASK_HITS.key(TASK): 1,
                               counters.CACHE_HITS.key(TASK): 2}

    Path(store.entry_path(cache, "g2")).write_bytes(b"FMXCACH1 cut short")  # an entry it lists is damaged
    main, tagged = _outputs(gate.process((TASK, shards), TABLE))
    assert [g.shard for g in main] == shards and "tokenized" not in tagged  # all or nothing: read again
    assert _counts(tagged) == {counters.CACHE_TASK_MISSES.key(TASK): 1}


def test_the_index_key_covers_files_ordinals_and_sampling(tmp_path):
    task = TABLE.tasks[TASK]
    files = [("a (x.tsv)", "1" * 64), ("a (y.tsv)", "2" * 64)]
    base = keys.task_entry_key("k", TASK, task, (2, 0), (), files)
    other = TaskSampling(TASK, "cot", 1.0, 40, 2.0, task.settings)
    assert len({base, keys.task_entry_key("k2", TASK, task, (2, 0), (), files),
                keys.task_entry_key("k", TASK, task, (2, 5), (), files),
                keys.task_entry_key("k", TASK, task, (3, 0), (), files),
                keys.task_entry_key("k", TASK, other, (2, 0), (), files),
                keys.task_entry_key("k", TASK, task, (2, 0), (), files[::-1]),
                keys.task_entry_key("k", TASK, task, (2, 0), (), [files[0], ("a (y.tsv)", "3" * 64)])}) == 7

