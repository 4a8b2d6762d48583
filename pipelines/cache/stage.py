"""CachedEncode: the graph's hook for `--cache`. Replaces ReadSources | RenderTemplates | Tokenize with
one DoFn per source file that either replays the file's stored entry or runs those three stages' own
DoFns on it (the same code, fused) and stores what they emitted.

    sources | CachedEncode(plan, model, table)  ->  .tokenized (shard, ShardItems), [ROWS], [DEAD_LETTER], [STATS]
    [ROWS] | GroupExemplars | CachedGroupEncode(plan, model, table)  ->  .tokenized, [DEAD_LETTER], [STATS]

Tasks with exemplar groups (a few-shot setting and two rows or more, `planning.exemplars.wants_groups`)
are not served per file: a prompt of theirs shows rows of the task's other files, and each group's
setting offset comes from its ordinal among ALL tasks' groups (`stages.exemplars.group_ordinals`), so
one file's output depends on every file of the task and on other tasks' row counts. Two layers serve
them instead:

    sources | TaskGate  ->  ["passed"] other tasks' shards -> CachedEncode as above
                            ["tokenized"], [DEAD_LETTER], [STATS]: tasks replayed whole from their index
                            ["gated"] GatedShard of the others -> CachedEncode -> [ROWS], [TASK_PARTS]
    [ROWS] | GroupExemplars | CachedGroupEncode  ->  .tokenized, [DEAD_LETTER], [STATS], [TASK_PARTS]
    [TASK_PARTS] | StoreTaskIndexes

- per task, an index (`keys.task_entry_key`: the task key, every file's SHA-256, the task's sampling
  row and its groups' ordinals, all known before a row is read). `TaskGateFn` sees all of a task's
  shards at once (a GroupByKey on the dataset): when the index and every entry it lists are intact,
  it replays them (the rows read, then each group's examples) and the task's files are not read at
  all; else it passes the shards on to be read, and the task counts a `cache_task_miss`.
- per exemplar group, after GroupExemplars (`keys.group_key`: the group's rows' content, its ordinal,
  the task): `CachedGroupEncodeFn` replays the group's entry or renders, tokenizes and stores it. So a
  changed template or source file of one few-shot task re-renders that task's groups only, and one
  changed row only the group holding it. Rows that join no group (they are dead-lettered) get an
  entry too (`keys.group_key`, ordinal -1), listed only by an index.
- every step of a missed task reports a `TaskPart` (the reads their row counts and the files' hashes
  checked again; the groups their entry keys, and whether each is stored); `StoreTaskIndexes` writes
  the task's index once all parts are in, only when every entry is stored and no file changed.

(The whole-corpus layer, `cache.corpus`, replays everything: its key covers the plan and every source file.)

Outputs are the same records a cold build's stages emit, so Pack, WriteCorpus, MergeReports and the
manifest cannot tell a warm build from a cold one, except for the cache counters
(`counters.CACHE_*`, the manifest's `cache` section). An entry is keyed after the survey
(`keys.entry_key` needs the task's sampling row) and after hashing the source file's bytes; the
file is hashed again once a miss is built, and the entry is not stored if the bytes changed meanwhile.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import apache_beam as beam

from pipelines import counters
from pipelines.cache import keys, store
from pipelines.planning.exemplars import wants_groups
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import ExemplarSlice, RenderSlice, TokenizeSlice
from pipelines.planning.sampling import SamplingTable
from pipelines.loaders import SourceShard
from pipelines.records import DEAD_LETTER, STATS, Report
from pipelines.stages.exemplars import GroupOrdinalsFn
from pipelines.stages.read import read_shard_batches
from pipelines.stages.render import RenderBatchFn
from pipelines.stages.tokenize import TokenizeBatchFn

_LOG = logging.getLogger(__name__)
ROWS = "rows"  # the raw row batches of tasks with exemplar groups (see the module docstring)
TASK_PARTS = "task_parts"  # (dataset, TaskPart): what a missed task's steps contribute to its index
GROUPED, PASSED, GATED, TOKENIZED = "grouped", "passed", "gated", "tokenized"


@dataclass(frozen=True)
class GatedShard:
    """A source shard of a task with exemplar groups whose index missed, on its way to be read.
    `task_entry`: the key of the index it will be listed in, and `source_sha256` what the gate hashed
    its file to (both None when a shard of the task has no single file: nothing to key)."""

    shard: SourceShard
    task_entry: str | None
    source_sha256: str | None


@dataclass(frozen=True)
class TaskPart:
    """One step's share of a missed task's index: a file read (`task_entry`, its `read_counts`, `ok`
    when the file is unchanged since the gate hashed it) or a group (`entry`, `ok` when stored)."""

    task_entry: str | None = None
    read_counts: tuple = ()  # ((key parts), count) pairs of the read's Report
    entry: str | None = None
    ok: bool = True


def _tagged(out):
    """(tag, value) of a DoFn's output: tag None for the main output."""
    if isinstance(out, beam.pvalue.TaggedOutput):
        return out.tag, out.value
    return None, out


def _route(outputs, writer, counts: Counter):
    """A fused DoFn's outputs: its STATS added to `counts`, its dead letters recorded in the entry
    and passed on; main outputs passed on as they are."""
    for out in outputs:
        tag, value = _tagged(out)
        if tag == STATS:
            counts.update(value.counts)
            continue
        if tag == DEAD_LETTER:
            writer.dead_letter(value)
        yield out


class _EncodeFn(beam.DoFn):
    """RenderTemplates' and Tokenize's DoFns fused, recording what they emit into an entry writer."""

    def __init__(self, cache_dir: str, task_keys: dict[str, str], render: RenderSlice, tokenize: TokenizeSlice,
                 model_proto: bytes | None, num_threads: int = -1):
        self.cache_dir, self.task_keys = cache_dir, task_keys
        self.render_fn = RenderBatchFn(render)
        self.tokenize_fn = TokenizeBatchFn(tokenize, model_proto, num_threads)

    def setup(self):
        self.render_fn.setup()
        self.tokenize_fn.setup()

    def _encode(self, element, table, writer, counts: Counter):
        """Render and tokenize one RenderTemplates input (a row batch or an exemplar group): yields the
        main and dead-letter outputs, adds the counts to `counts`; returns the examples rendered."""
        rendered = 0
        for out in _route(self.render_fn.process(element, table), writer, counts):
            if isinstance(out, beam.pvalue.TaggedOutput):  # a dead letter
                yield out
                continue
            rendered += len(out[1])
            for t_out in _route(self.tokenize_fn.process(out), writer, counts):
                if not isinstance(t_out, beam.pvalue.TaggedOutput):
                    writer.items(*t_out)
                yield t_out
        return rendered

    def _store(self, key: str, header: dict, what: str, build):
        """The miss path shared by files and groups: run `build(writer)` (a generator) into a new
        entry's writer and return the writer, to be committed (or aborted) by the caller."""
        writer = store.SafeWriter(self.cache_dir, key, {"format": keys.FORMAT_VERSION, **header}, what)
        try:
            yield from build(writer)
        except BaseException:
            writer.abort()
            raise
        return writer


def replay_entry(dataset: str, entry: store.Entry):
    """What the stages emitted into `entry`, emitted again (with their Beam counters)."""
    for frame in entry.frames:
        kind = frame[0]
        if kind == "T":
            yield frame[1], frame[2]
        elif kind == "D":
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, frame[1])
        elif kind == "R":
            counters.READ_ROWS.counter(dataset).inc(frame[1].get(counters.READ.key(dataset), 0))
            yield beam.pvalue.TaggedOutput(STATS, Report(frame[1]))
        elif kind == "M":
            counters.RENDERED.counter().inc(frame[1]["rendered"])
            counters.RENDERED_BY_DATASET.counter(dataset).inc(frame[1]["rendered"])


class CachedEncodeFn(_EncodeFn):
    """Per source file: replay its entry, or read + render + tokenize it and store the entry. A
    `GatedShard` (a task with exemplar groups, `TaskGate`) is only read: its rows leave on [ROWS]."""

    def process(self, shard, table: SamplingTable):
        if isinstance(shard, GatedShard):
            yield from self._read_gated(shard)
            return
        dataset = shard.dataset
        task = table.tasks[dataset]
        path = keys.source_file(shard)
        if path is None:
            yield from self._build(shard, table, store.SafeWriter(None, "", {}, keys.describe(shard)))
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_UNCACHEABLE.key(dataset): 1}))
            return
        source_sha = keys.file_sha256(path)
        key = keys.entry_key(self.task_keys[dataset], shard, source_sha, task, table.pools.get(dataset, ()))
        entry, corrupt = store.load(self.cache_dir, key, keys.describe(shard))
        if entry is not None:
            yield from replay_entry(dataset, entry)
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_HITS.key(dataset): 1}))
            return
        extra = {counters.CACHE_MISSES.key(dataset): 1, **({counters.CACHE_CORRUPT.key(dataset): 1} if corrupt else {})}
        writer = yield from self._store(key, {"dataset": dataset, "source": path}, keys.describe(shard),
                                        lambda w: self._build(shard, table, w))
        if keys.file_sha256(path) != source_sha:  # changed while this build read it
            _LOG.warning("flanmix cache: %s changed during the build; its entry is not stored", path)
            writer.abort()
        if not writer.commit():
            extra[counters.CACHE_NOT_STORED.key(dataset)] = 1
        yield beam.pvalue.TaggedOutput(STATS, Report(extra))

    def _read_gated(self, gated: GatedShard):
        """ReadSources' reader on a missed task's shard: row batches to [ROWS], the read's Report as it
        is and, for the task's index, a TaskPart with its counts."""
        dataset = gated.shard.dataset
        read: Counter = Counter()
        for out in read_shard_batches(gated.shard):
            tag, value = _tagged(out)
            if tag == STATS:
                read.update(value.counts)
            yield out if tag is not None else beam.pvalue.TaggedOutput(ROWS, value)
        if gated.task_entry is None:
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_UNCACHEABLE.key(dataset): 1}))
            return
        unchanged = keys.file_sha256(keys.source_file(gated.shard)) == gated.source_sha256
        if not unchanged:
            _LOG.warning("flanmix cache: %s changed during the build; the index of %s is not stored",
                         keys.source_file(gated.shard), dataset)
        yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_MISSES.key(dataset): 1}))
        yield beam.pvalue.TaggedOutput(TASK_PARTS, (dataset, TaskPart(
            task_entry=gated.task_entry, read_counts=tuple(sorted(read.items())), ok=unchanged)))

    def _build(self, shard, table, writer):
        """The cold path: ReadSources' reader, then the RenderTemplates and Tokenize DoFns, batch by batch."""
        counts: Counter = Counter()
        rendered = 0
        for out in read_shard_batches(shard):
            tag, value = _tagged(out)
            if tag == STATS:
                counts.update(value.counts)
                continue
            rendered += yield from self._encode(value, table, writer, counts)
        counts = dict(counts)
        writer.counts(counts)
        writer.meta({"rendered": rendered})
        yield beam.pvalue.TaggedOutput(STATS, Report(counts))


class CachedGroupEncodeFn(_EncodeFn):
    """Per exemplar group (dataset, rows, ordinal) from GroupExemplars: replay its entry, or render +
    tokenize it and store the entry (`keys.group_key`). A (dataset, rows) batch (a grouped task's rows
    that will be dead-lettered) is rendered as it is and stored under `keys.group_key` (ordinal -1, with raw rows), for the task's
    index only. Each reports a TaskPart with its entry's key."""

    def process(self, element, table: SamplingTable):
        dataset = element[0]
        task = table.tasks[dataset]
        if len(element) != 3:
            key = keys.group_key(self.task_keys[dataset], dataset, -1, task, element[1], with_raw=True)
            writer = yield from self._store(key, {"dataset": dataset, "source": "rows in no exemplar group"},
                                            f"{dataset} (rows in no exemplar group)",
                                            lambda w: self._build(element, table, w))
            yield beam.pvalue.TaggedOutput(TASK_PARTS, (dataset, TaskPart(entry=key, ok=writer.commit())))
            return
        _, rows, ordinal = element
        key = keys.group_key(self.task_keys[dataset], dataset, ordinal, task, rows)
        what = f"{dataset} (exemplar group {ordinal})"
        entry, corrupt = store.load(self.cache_dir, key, what)
        if entry is not None:
            yield from replay_entry(dataset, entry)
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_GROUP_HITS.key(dataset): 1}))
            yield beam.pvalue.TaggedOutput(TASK_PARTS, (dataset, TaskPart(entry=key)))
            return
        extra = {counters.CACHE_GROUP_MISSES.key(dataset): 1, **({counters.CACHE_CORRUPT.key(dataset): 1} if corrupt else {})}
        writer = yield from self._store(key, {"dataset": dataset, "source": f"exemplar group {ordinal}"}, what,
                                        lambda w: self._build(element, table, w))
        stored = writer.commit()
        if not stored:
            extra[counters.CACHE_NOT_STORED.key(dataset)] = 1
        yield beam.pvalue.TaggedOutput(STATS, Report(extra))
        yield beam.pvalue.TaggedOutput(TASK_PARTS, (dataset, TaskPart(entry=key, ok=stored)))

    def _build(self, element, table, writer):
        counts: Counter = Counter()
        rendered = yield from self._encode(element, table, writer, counts)
        counts = dict(counts)
        writer.counts(counts)
        writer.meta({"rendered": rendered})
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(counts))


class KeyGroupedTasksFn(beam.DoFn):
    """Source shards -> [GROUPED] (dataset, shard) for tasks with exemplar groups, the rest as they are."""

    def process(self, shard, table: SamplingTable):
        task = table.tasks[shard.dataset]
        if wants_groups(task.settings, task.count):
            yield beam.pvalue.TaggedOutput(GROUPED, (shard.dataset, shard))
        else:
            yield shard


class TaskGateFn(GroupOrdinalsFn):
    """(dataset, all its shards) of a task with exemplar groups -> the task replayed from its index
    (["tokenized"], [DEAD_LETTER], [STATS]), or its shards as GatedShard to be read (see the module
    docstring). Every entry the index lists is checked before any is replayed: all or nothing."""

    def __init__(self, plan: ExemplarSlice, cache_dir: str, task_keys: dict[str, str]):
        super().__init__(plan)
        self.cache_dir, self.task_keys = cache_dir, task_keys

    def process(self, element, table: SamplingTable):
        dataset, shards = element
        shards = sorted(shards, key=lambda shard: shard.index)
        paths = [keys.source_file(shard) for shard in shards]
        if any(path is None for path in paths):  # nothing to key the task by: read it every build
            for shard in shards:
                yield GatedShard(shard, None, None)
            return
        shas = [keys.file_sha256(path) for path in paths]
        task = table.tasks[dataset]
        key = keys.task_entry_key(self.task_keys[dataset], dataset, task, self._ordinals(table)[dataset],
                                  table.pools.get(dataset, ()), [(keys.describe(s), h) for s, h in zip(shards, shas)])
        index, corrupt = store.load(self.cache_dir, key, f"{dataset} (task index)")
        listed = [k for frame in index.frames if frame[0] == "K" for k in frame[1]] if index is not None else []
        if index is not None and all(store.intact(self.cache_dir, k) for k in listed):
            yield from (beam.pvalue.TaggedOutput(TOKENIZED, out) if not isinstance(out, beam.pvalue.TaggedOutput) else out
                        for out in self._replay(dataset, index, listed))
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_TASK_HITS.key(dataset): 1,
                                                          counters.CACHE_HITS.key(dataset): len(shards)}))
            return
        yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_TASK_MISSES.key(dataset): 1,
                                                      **({counters.CACHE_CORRUPT.key(dataset): 1} if corrupt else {})}))
        for shard, sha in zip(shards, shas):
            yield GatedShard(shard, key, sha)

    def _replay(self, dataset: str, index: store.Entry, listed: list[str]):
        yield from replay_entry(dataset, index)  # the rows read
        for k in listed:  # one entry in memory at a time
            entry, _ = store.load(self.cache_dir, k, f"{dataset} (an entry of its task index)")
            if entry is None:  # checked a moment ago: removed or altered during this build
                raise RuntimeError(f"flanmix cache: an entry of the task index of {dataset} ({store.entry_path(self.cache_dir, k)}) "
                                   "changed while this build replayed it; nothing was published: run the build again")
            yield from replay_entry(dataset, entry)


class StoreTaskIndexFn(beam.DoFn):
    """(dataset, [TaskPart]) of a missed task -> its index stored, when every part is `ok` and all of
    its reads name the same index (a task without one, e.g. an hf source, stores nothing)."""

    def __init__(self, cache_dir: str):
        self.cache_dir = cache_dir

    def process(self, element):
        dataset, parts = element
        parts = list(parts)
        indexes = {p.task_entry for p in parts if p.task_entry is not None}
        if len(indexes) != 1 or not all(p.ok for p in parts):
            return
        read: Counter = Counter()
        for part in parts:
            read.update({tuple(k): v for k, v in part.read_counts})
        (key,) = indexes
        writer = store.SafeWriter(self.cache_dir, key, {"format": keys.FORMAT_VERSION, "dataset": dataset, "source": "task index"},
                             f"{dataset} (task index)")
        writer.counts(dict(read))
        writer.keys(sorted({p.entry for p in parts if p.entry is not None}))
        writer.commit()


class _CacheStage(beam.PTransform):
    """What the cache's transforms share: the plan, the side-input table and the task keys, computed
    once per build (`keys.task_keys` digests every task's templates) and given to each of them."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None, table, num_threads: int = -1,
                 task_keys: dict[str, str] | None = None):
        super().__init__()
        self.plan, self.model_proto, self.table, self.num_threads = plan, model_proto, table, num_threads
        self.task_keys = keys.task_keys(plan) if task_keys is None else task_keys

    def _fn(self, cls):
        return cls(self.plan.cache_dir, self.task_keys, RenderSlice.of(self.plan), TokenizeSlice.of(self.plan),
                   self.model_proto, self.num_threads)


class CachedEncode(_CacheStage):
    """sources (SourceShard, or GatedShard from TaskGate) -> `.tokenized` (shard, ShardItems), [ROWS] (dataset,
    [RawRow]), [DEAD_LETTER], [STATS], [TASK_PARTS]; see the module docstring."""

    def expand(self, sources):
        return sources | "ReadRenderTokenize" >> beam.ParDo(
            self._fn(CachedEncodeFn), beam.pvalue.AsSingleton(self.table)).with_outputs(
            ROWS, DEAD_LETTER, STATS, TASK_PARTS, main="tokenized")


class CachedGroupEncode(_CacheStage):
    """GroupExemplars' output -> `.tokenized` (shard, ShardItems), [DEAD_LETTER], [STATS], [TASK_PARTS]:
    RenderTemplates | Tokenize, with an entry per exemplar group (see the module docstring)."""

    def expand(self, groups):
        return groups | "RenderTokenizeGroups" >> beam.ParDo(
            self._fn(CachedGroupEncodeFn), beam.pvalue.AsSingleton(self.table)).with_outputs(
            DEAD_LETTER, STATS, TASK_PARTS, main="tokenized")


class TaskGate(_CacheStage):
    """sources -> {"passed": shards of tasks without exemplar groups, "gated": GatedShard of the missed
    tasks with them, "tokenized" / DEAD_LETTER / STATS: the tasks replayed from their index}. `spread`:
    reshuffle the gated shards, which leave the gate's GroupByKey one task per bundle, so a parallel
    runner reads them on all its workers."""

    def __init__(self, plan: BuildPlan, table, task_keys: dict[str, str] | None = None, spread: bool = False):
        super().__init__(plan, None, table, task_keys=task_keys)
        self.spread = spread

    def expand(self, sources):
        table = beam.pvalue.AsSingleton(self.table)
        split = sources | "KeyGroupedTasks" >> beam.ParDo(KeyGroupedTasksFn(), table).with_outputs(GROUPED, main=PASSED)
        gate = (
            split[GROUPED]
            | "GroupTaskShards" >> beam.GroupByKey()
            | "ReplayOrPass" >> beam.ParDo(TaskGateFn(ExemplarSlice.of(self.plan), self.plan.cache_dir, self.task_keys),
                                           table).with_outputs(TOKENIZED, DEAD_LETTER, STATS, main=GATED)
        )
        gated = gate[GATED] | "SpreadReads" >> beam.Reshuffle() if self.spread else gate[GATED]
        return {PASSED: split[PASSED], GATED: gated, TOKENIZED: gate[TOKENIZED], DEAD_LETTER: gate[DEAD_LETTER],
                STATS: gate[STATS]}


class StoreTaskIndexes(beam.PTransform):
    """[TASK_PARTS] of the read and group steps -> each missed task's index stored (no output)."""

    def __init__(self, cache_dir: str):
        super().__init__()
        self.cache_dir = cache_dir

    def expand(self, parts):
        return (parts
                | "GroupTaskParts" >> beam.GroupByKey()
                | "WriteTaskIndex" >> beam.ParDo(StoreTaskIndexFn(self.cache_dir)))
