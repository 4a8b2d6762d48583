"""CachedEncode: the graph's hook for `--cache`. Replaces ReadSources | RenderTemplates | Tokenize with
one DoFn per source file that either replays the file's stored entry or runs those three stages' own
DoFns on it (the same code, fused) and stores what they emitted.

    sources | CachedEncode(plan, model, table)  ->  .tokenized (shard, ShardItems), [ROWS], [DEAD_LETTER], [STATS]
    [ROWS] | GroupExemplars | CachedGroupEncode(plan, model, table)  ->  .tokenized, [DEAD_LETTER], [STATS]

Tasks with exemplar groups (a few-shot setting and two rows or more, `planning.exemplars.wants_groups`)
are not served per file: a prompt of theirs shows rows of the task's other files, and each group's
setting offset comes from its ordinal among ALL tasks' groups (`stages.exemplars.group_ordinals`), so
one file's output depends on every file of the task and on other tasks' row counts. Their files are
read here (each counts as `cache_uncacheable`) and their raw row batches leave on [ROWS] for the
graph's usual GroupExemplars; then `CachedGroupEncode` serves each exemplar group from an entry of
its own, keyed by its rows' content, its ordinal and the task (`keys.group_key`), or renders and
tokenizes it (RenderTemplates' and Tokenize's DoFns) and stores it. So a changed template or source
file of one few-shot task re-renders that task's groups only; what every build still pays for such
a task is reading its files and grouping their rows. (The whole-corpus layer, `cache.corpus`, replays
everything: its key covers the plan and every source file.)

Outputs are the same records a cold build's stages emit, so Pack, WriteCorpus, MergeReports and the
manifest cannot tell a warm build from a cold one, except for the cache counters
(`counters.CACHE_*`, the manifest's `cache` section). An entry is keyed after the survey
(`keys.entry_key` needs the task's sampling row) and after hashing the source file's bytes; the
file is hashed again once a miss is built, and the entry is not stored if the bytes changed meanwhile.
"""
from __future__ import annotations

import logging
from collections import Counter

import apache_beam as beam

from pipelines import counters
from pipelines.cache import keys, store
from pipelines.planning.exemplars import wants_groups
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import RenderSlice, TokenizeSlice
from pipelines.planning.sampling import SamplingTable
from pipelines.records import DEAD_LETTER, STATS, Report
from pipelines.stages.read import read_shard_batches
from pipelines.stages.render import RenderBatchFn
from pipelines.stages.tokenize import TokenizeBatchFn

_LOG = logging.getLogger(__name__)
ROWS = "rows"  # the raw row batches of tasks with exemplar groups (see the module docstring)


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


class _SafeWriter:
    """An `store.EntryWriter` whose failures are warnings: an unwritable cache never fails a build, it
    only leaves that entry unstored (`cache_not_stored`). `cache_dir` None: writes nothing."""

    def __init__(self, cache_dir: str | None, key: str, header: dict, what: str):
        self.what, self.writer = what, None
        if cache_dir is not None:
            self._guard(lambda: setattr(self, "writer", store.EntryWriter(cache_dir, key, header)))

    def _guard(self, action) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            _LOG.warning("flanmix cache: cannot store the entry of %s: %s", self.what, exc)
            self.abort()

    def __getattr__(self, name):  # items, dead_letter, counts, meta
        def call(*args):
            if self.writer is not None:
                self._guard(lambda: getattr(self.writer, name)(*args))
        return call

    def abort(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()

    def commit(self) -> bool:
        """True when the entry is now stored."""
        if self.writer is None:
            return False
        self._guard(self.writer.commit)
        stored, self.writer = self.writer is not None, None
        return stored


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
        writer = _SafeWriter(self.cache_dir, key, {"format": keys.FORMAT_VERSION, **header}, what)
        try:
            yield from build(writer)
        except BaseException:
            writer.abort()
            raise
        return writer

    def _replay(self, dataset: str, entry: store.Entry):
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
    """Per source file: replay its entry, or read + render + tokenize it and store the entry."""

    def __init__(self, cache_dir: str, task_keys: dict[str, str], render: RenderSlice, tokenize: TokenizeSlice,
                 model_proto: bytes | None, num_threads: int = -1, exemplar_groups: bool = False):
        super().__init__(cache_dir, task_keys, render, tokenize, model_proto, num_threads)
        self.exemplar_groups = exemplar_groups

    def process(self, shard, table: SamplingTable):
        dataset = shard.dataset
        task = table.tasks[dataset]
        if self.exemplar_groups and wants_groups(task.settings, task.count):  # served per group: see above
            for out in read_shard_batches(shard):
                tag, value = _tagged(out)
                yield out if tag is not None else beam.pvalue.TaggedOutput(ROWS, value)
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_UNCACHEABLE.key(dataset): 1}))
            return
        path = keys.source_file(shard)
        if path is None:
            yield from self._build(shard, table, _SafeWriter(None, "", {}, keys.describe(shard)))
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_UNCACHEABLE.key(dataset): 1}))
            return
        source_sha = keys.file_sha256(path)
        key = keys.entry_key(self.task_keys[dataset], shard, source_sha, task, table.pools.get(dataset, ()))
        entry, corrupt = store.load(self.cache_dir, key, keys.describe(shard))
        if entry is not None:
            yield from self._replay(dataset, entry)
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
    that will be dead-lettered) is rendered as it is, with no entry."""

    def process(self, element, table: SamplingTable):
        dataset = element[0]
        if len(element) != 3:
            counts: Counter = Counter()
            yield from self._encode(element, table, _SafeWriter(None, "", {}, dataset), counts)
            if counts:
                yield beam.pvalue.TaggedOutput(STATS, Report(dict(counts)))
            return
        _, rows, ordinal = element
        key = keys.group_key(self.task_keys[dataset], dataset, ordinal, table.tasks[dataset], rows)
        what = f"{dataset} (exemplar group {ordinal})"
        entry, corrupt = store.load(self.cache_dir, key, what)
        if entry is not None:
            yield from self._replay(dataset, entry)
            yield beam.pvalue.TaggedOutput(STATS, Report({counters.CACHE_GROUP_HITS.key(dataset): 1}))
            return
        extra = {counters.CACHE_GROUP_MISSES.key(dataset): 1, **({counters.CACHE_CORRUPT.key(dataset): 1} if corrupt else {})}
        writer = yield from self._store(key, {"dataset": dataset, "source": f"exemplar group {ordinal}"}, what,
                                        lambda w: self._build(element, table, w))
        if not writer.commit():
            extra[counters.CACHE_NOT_STORED.key(dataset)] = 1
        yield beam.pvalue.TaggedOutput(STATS, Report(extra))

    def _build(self, element, table, writer):
        counts: Counter = Counter()
        rendered = yield from self._encode(element, table, writer, counts)
        counts = dict(counts)
        writer.counts(counts)
        writer.meta({"rendered": rendered})
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(counts))


class CachedEncode(beam.PTransform):
    """sources -> `.tokenized` (shard, ShardItems), [ROWS] (dataset, [RawRow]), [DEAD_LETTER], [STATS]; see the
    module docstring."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None, table, num_threads: int = -1):
        super().__init__()
        self.plan, self.model_proto, self.table, self.num_threads = plan, model_proto, table, num_threads

    def expand(self, sources):
        fn = CachedEncodeFn(self.plan.cache_dir, keys.task_keys(self.plan), RenderSlice.of(self.plan),
                            TokenizeSlice.of(self.plan), self.model_proto, self.num_threads, self.plan.exemplar_groups)
        return sources | "ReadRenderTokenize" >> beam.ParDo(fn, beam.pvalue.AsSingleton(self.table)).with_outputs(
            ROWS, DEAD_LETTER, STATS, main="tokenized")


class CachedGroupEncode(beam.PTransform):
    """GroupExemplars' output -> `.tokenized` (shard, ShardItems), [DEAD_LETTER], [STATS]: RenderTemplates |
    Tokenize, with an entry per exemplar group (see the module docstring)."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None, table, num_threads: int = -1):
        super().__init__()
        self.plan, self.model_proto, self.table, self.num_threads = plan, model_proto, table, num_threads

    def expand(self, groups):
        fn = CachedGroupEncodeFn(self.plan.cache_dir, keys.task_keys(self.plan), RenderSlice.of(self.plan),
                                 TokenizeSlice.of(self.plan), self.model_proto, self.num_threads)
        return groups | "RenderTokenizeGroups" >> beam.ParDo(fn, beam.pvalue.AsSingleton(self.table)).with_outputs(
            DEAD_LETTER, STATS, main="tokenized")
