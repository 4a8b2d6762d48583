"""The pipeline's stages as composite PTransforms; each `expand` only wires small, tested DoFns.

    sources | ReadSources() | RenderTemplates(plan) | Tokenize(plan, vocab) | Pack(plan) | WriteCorpus(plan, out)
    merged reports | FinishCorpus (finish_corpus: dead-letter file, empty shards)

Elements travel in batches (a list per element) so templates render and SentencePiece encodes
lists, not single rows; a packed shard travels as column matrices (`packing.PackedBatch`). Every row
ends in the corpus or in the dead-letter output with a reason.
"""
from __future__ import annotations

import heapq
import concurrent.futures
import json
from collections import Counter
from typing import Iterable, Iterator

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines import sampling, spill, startup_heap, writers
from pipelines.errors import RenderError
from pipelines.fieldtypes import field_problem
from pipelines.hashing import placement
from pipelines.loaders import SourceShard, get_loader
from pipelines.packing import LAYOUT_DECODER, PackedBatch, TokenizedExample, fit_example, pack_batches
from pipelines.plan import BuildPlan
from pipelines.sampling import SamplingTable
from pipelines.stats import Report, count_example
from pipelines.templates import compile_template, render
from pipelines.vocab import worker_vocabulary

DEAD_LETTER = "dead_letter"
STATS = "stats"
BATCH_SIZE = 512
NAMESPACE = "flanmix"


def dead_letter(dataset: str, row_id: str, stage: str, reason: str, raw: str | None = None) -> dict:
    record = {"dataset": dataset, "row_id": row_id, "stage": stage, "reason": reason}
    if raw is not None:
        record["raw"] = raw
    return record


# --- ReadSources ---------------------------------------------------------------------------------

def read_shard_batches(shard: SourceShard, batch_size: int = BATCH_SIZE) -> Iterator:
    """(dataset, [RawRow]) batches, then one Report with the rows read."""
    loader = get_loader(shard.loader_type)
    batch, total = [], 0
    counter = Metrics.counter(NAMESPACE, f"read/{shard.dataset}")
    for row in loader.read(shard):
        batch.append(row)
        if len(batch) >= batch_size:
            total += len(batch)
            counter.inc(len(batch))
            yield shard.dataset, batch
            batch = []
    if batch:
        total += len(batch)
        counter.inc(len(batch))
        yield shard.dataset, batch
    yield beam.pvalue.TaggedOutput(STATS, Report({("read", shard.dataset): total}))


class ReadSources(beam.PTransform):
    def expand(self, sources):
        return (
            sources
            | "ReadShards" >> beam.FlatMap(read_shard_batches).with_outputs(STATS, main="rows")
        )


# --- RenderTemplates -----------------------------------------------------------------------------

class RenderBatchFn(beam.DoFn):
    """Checks declared field types, samples each row's copies, picks prompt setting, template and
    exemplars from keyed hashes, and renders. Side input: the build's SamplingTable."""

    def __init__(self, plan: BuildPlan):
        self.plan = plan

    def setup(self):
        startup_heap.freeze_once_in_worker()
        self.compiled = {
            name: {t.id: compile_template(t) for t in ds.templates} for name, ds in self.plan.datasets.items()
        }
        self.rendered = Metrics.counter(NAMESPACE, "rendered")

    def process(self, element, table: SamplingTable):
        dataset, rows = element
        plan = self.plan
        ds = plan.datasets[dataset]
        task = table.tasks[dataset]
        pool = table.pools.get(dataset, ())
        compiled = self.compiled[dataset]
        out = []
        counts: Counter = Counter()
        for row in rows:
            if row.error is not None:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, row.row_id, "read", row.error, row.raw))
                continue
            problem = field_problem(row.fields, ds.fields)
            if problem is not None:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, row.row_id, "render", problem))
                continue
            n_copies = sampling.copies(task.rate, plan.seed, dataset, row.row_id)
            if n_copies == 0:
                counts[("sampled_out", dataset)] += 1
                continue
            if n_copies > 1:
                counts[("upsampled_copies", dataset)] += n_copies - 1
            for c in range(n_copies):
                key = sampling.copy_key(row.row_id, c)
                variant = sampling.choose_variant(
                    ds.templates, task.settings, pool, plan.few_shot, plan.seed, dataset, row.row_id, key
                )
                ct = compiled[variant.template.id]
                try:
                    inputs, targets = render(ct, row.fields, (plan.seed, dataset, row.row_id))
                except RenderError as exc:
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "render", str(exc)))
                    continue
                shots = []
                for ex_id, ex_fields in variant.exemplars:
                    try:
                        ex_in, ex_tg = render(ct, ex_fields, (plan.seed, dataset, ex_id))
                    except RenderError:
                        counts[("exemplar_render_failed", dataset)] += 1
                        continue
                    shots.append(ex_in + plan.few_shot.target_separator + ex_tg)
                out.append((variant.template.id, key, variant.setting, inputs, targets, tuple(shots)))
        self.rendered.inc(len(out))
        Metrics.counter(NAMESPACE, f"rendered/{dataset}").inc(len(out))  # per-dataset progress
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(dict(counts)))
        if out:
            yield dataset, out


class RenderTemplates(beam.PTransform):
    def __init__(self, plan: BuildPlan, table):
        super().__init__()
        self.plan, self.table = plan, table

    def expand(self, batches):
        return batches | "Render" >> beam.ParDo(RenderBatchFn(self.plan), beam.pvalue.AsSingleton(self.table)).with_outputs(
            DEAD_LETTER, STATS, main="rendered"
        )


# --- Tokenize ------------------------------------------------------------------------------------

class TokenizeBatchFn(beam.DoFn):
    """Encodes a batch with SentencePiece, fits few-shot prompts to the inputs budget (dropping whole
    exemplars from the end, never cutting one), appends EOS, applies the overlong policy and assigns
    each example its output shard and its place in that shard from (seed, dataset, copy key)."""

    def __init__(self, plan: BuildPlan, model_proto: bytes | None, num_threads: int = -1):
        """`model_proto`: see `vocab.shipped_model` (None: the packaged default)."""
        self.plan = plan
        self.model_proto = model_proto
        self.num_threads = num_threads

    def setup(self):
        startup_heap.freeze_once_in_worker()
        self.vocab = worker_vocabulary(self.model_proto, self.plan.vocab_path, self.plan.vocab_sha256)

    def _fit_few_shot(self, query: str, query_ids: list[int], shots: tuple[str, ...]) -> tuple[list[int], int]:
        return sampling.fit_few_shot(self.vocab, query, query_ids, shots, self.plan.inputs_length - 1, self.plan.few_shot)

    def process(self, element):
        dataset, examples = element
        plan = self.plan
        ids = self.vocab.encode_batch(
            [e[3] for e in examples] + [e[4] for e in examples], num_threads=self.num_threads
        )
        n = len(examples)
        by_shard: dict[int, list] = {}
        counts: Counter = Counter()
        for i, (template_id, key, setting, query, _, shots) in enumerate(examples):
            input_ids = ids[i]
            if shots:
                input_ids, k = self._fit_few_shot(query, input_ids, shots)
                counts[("fewshot_k", str(k))] += 1
                if k < len(shots):
                    counts[("fewshot_exemplars_dropped", dataset)] += len(shots) - k
                if k == 0:
                    setting = "zs_" + setting.split("_")[1]  # nothing fits beside the query
                    counts[("fewshot_fell_back_to_zero_shot", dataset)] += 1
            inputs, targets, cut = fit_example(input_ids, ids[n + i], plan.layout, plan.inputs_length,
                                               plan.targets_length, plan.decoder_length)
            if cut:
                if plan.overlong == "drop":
                    budget = (f"{plan.decoder_length} (decoder)" if plan.layout == LAYOUT_DECODER
                              else f"{plan.inputs_length}/{plan.targets_length}")
                    reason = f"overlong: {len(input_ids) + 1} inputs / {len(ids[n + i]) + 1} targets tokens > {budget}"
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "tokenize", reason))
                    continue
                counts[("truncated", dataset)] += 1
            shard, order = placement(plan.seed, plan.num_shards, dataset, key)
            by_shard.setdefault(shard, []).append(
                (order, inputs.tobytes(), targets.tobytes(), f"{dataset}|{template_id}|{setting}|{key}")
            )
        for shard, items in by_shard.items():
            yield shard, items
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(dict(counts)))


class Tokenize(beam.PTransform):
    def __init__(self, plan: BuildPlan, model_proto: bytes, num_threads: int = -1):
        super().__init__()
        self.plan, self.model_proto, self.num_threads = plan, model_proto, num_threads

    def expand(self, rendered):
        return rendered | "Encode" >> beam.ParDo(
            TokenizeBatchFn(self.plan, self.model_proto, self.num_threads)
        ).with_outputs(DEAD_LETTER, STATS, main="tokenized")


# --- Pack ----------------------------------------------------------------------------------------

def shard_order_key(item) -> tuple:
    """(order hash, provenance): a total order of a shard's items."""
    return item[0], item[3]


def order_shard(batches: Iterable) -> list[TokenizedExample]:
    """The deterministic order of one shard's examples, whatever order the batches arrived in.
    A batch is a list of items or a `spill.Run` (items spilled to a sorted file, merged here)."""
    items, runs = [], []
    for batch in batches:
        if isinstance(batch, spill.Run):
            runs.append(batch)
        else:
            items.extend(batch)
    items.sort(key=shard_order_key)
    merged = heapq.merge(items, spill.merge_runs(runs, shard_order_key), key=shard_order_key) if runs else items
    return [
        TokenizedExample(np.frombuffer(i, np.int32), np.frombuffer(t, np.int32), p) for _, i, t, p in merged
    ]


class PackShardFn(beam.DoFn):
    def __init__(self, plan: BuildPlan):
        self.plan = plan

    def process(self, element):
        shard, batches = element
        examples = order_shard(batches)
        plan = self.plan
        batches = list(pack_batches(examples, plan.layout, plan.inputs_length, plan.targets_length,
                                    plan.decoder_length, buffer_size=plan.pack_buffer))
        Metrics.counter(NAMESPACE, "packed_rows").inc(sum(len(b) for b in batches))
        yield shard, batches


class Pack(beam.PTransform):
    """Shards that receive no examples get no element here; `finish_corpus` writes their (empty)
    files once the job knows which they are. `spill_dir`: spill the examples to sorted run files there (`pipelines.spill`) so the shuffle
    carries only file references; None keeps them in the shuffle."""

    def __init__(self, plan: BuildPlan, spill_dir: str | None = None):
        super().__init__()
        self.plan, self.spill_dir = plan, spill_dir

    def expand(self, keyed_examples):
        if self.spill_dir is not None:
            keyed_examples = keyed_examples | "SpillRuns" >> beam.ParDo(spill.SpillRunsFn(self.spill_dir, shard_order_key))
        return (
            keyed_examples
            | "GroupByShard" >> beam.GroupByKey()
            | "PackShard" >> beam.ParDo(PackShardFn(self.plan))
        )


# --- WriteCorpus ---------------------------------------------------------------------------------

def shard_report(batches: list[PackedBatch], files, plan: BuildPlan) -> Report:
    counts: Counter = Counter()
    for batch in batches:
        a = batch.arrays
        counts[("rows",)] += len(batch)
        if "inputs_segment_ids" in a:
            counts[("inputs_nonpad",)] += int(np.count_nonzero(a["inputs_segment_ids"]))
        counts[("targets_nonpad",)] += int(np.count_nonzero(a["targets_segment_ids"]))
        if "loss_mask" in a:
            counts[("loss_tokens",)] += int(np.count_nonzero(a["loss_mask"]))
        tokens = batch.segment_tokens.tolist()
        for (n_in, n_tg), prov in zip(tokens, (p for row in batch.provenance for p in row)):
            dataset = count_example(counts, prov)
            counts[("inputs_tokens", dataset)] += n_in
            counts[("targets_tokens", dataset)] += n_tg
    return Report(dict(counts), tuple(files))


def write_packed_shard(shard: int, batches: list[PackedBatch], plan: BuildPlan, output_dir: str) -> Report:
    """Write one shard's TFRecord and Parquet files (empty files for no batches); its Report."""
    num_rows = sum(len(b) for b in batches)
    prefix = f"{plan.mixture}-{plan.split}"
    n = plan.num_shards
    # Parquet encoding releases the GIL (Arrow's C++), so it overlaps the TFRecord serialization.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        parquet = pool.submit(writers.parquet_bytes, batches, plan.layout)
        tfrecord = writers.tfrecord_bytes(batches)
        files = [
            writers.write_file(output_dir, "tfrecord/" + writers.shard_name(prefix, shard, n, ".tfrecord"), tfrecord, num_rows),
            writers.write_file(output_dir, "parquet/" + writers.shard_name(prefix, shard, n, ".parquet"), parquet.result(), num_rows),
        ]
    return shard_report(batches, files, plan)


class WriteShardFn(beam.DoFn):
    def __init__(self, plan: BuildPlan, output_dir: str):
        self.plan, self.output_dir = plan, output_dir

    def process(self, element):
        shard, batches = element
        report = write_packed_shard(shard, batches, self.plan, self.output_dir)
        Metrics.counter(NAMESPACE, "written_rows").inc(report.counts.get(("rows",), 0))
        for key, count in report.counts.items():  # per-dataset progress: examples written
            if key[0] == "examples":
                Metrics.counter(NAMESPACE, f"written/{key[1]}").inc(count)
        yield report


class WriteCorpus(beam.PTransform):
    def __init__(self, plan: BuildPlan, output_dir: str):
        super().__init__()
        self.plan, self.output_dir = plan, output_dir

    def expand(self, packed):
        return packed | "WriteShard" >> beam.ParDo(WriteShardFn(self.plan, self.output_dir))


# --- FinishCorpus: what only the whole job knows ---------------------------------------------------

DEAD_LETTER_FILE = "dead_letter/dead_letter-00000-of-00001.jsonl"


def dead_letter_report(record: dict) -> Report:
    """A dead-letter record on its way to the merged Report (and from there to one file)."""
    return Report(dead_letters=(record,))


def finish_corpus(report: Report, plan: BuildPlan, output_dir: str) -> Report:
    """After every stage has reported: write the dead-letter file (sorted JSONL, written even when
    empty so every corpus has one; the counts go to the manifest) and the empty files of output
    shards that received no rows, so every shard series is complete. Returns the full Report."""
    from pipelines import text_export

    counts = Counter(report.counts)
    files = list(report.files)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in report.dead_letters).encode("utf-8")
    files.append(writers.write_file(output_dir, DEAD_LETTER_FILE, data, len(report.dead_letters)))
    counts.update(("dead_letter", r["dataset"], r["stage"]) for r in report.dead_letters)
    written = {f.path for f in report.files}
    for shard in range(plan.num_shards):
        if plan.output_format == "jsonl":
            if text_export.shard_path(plan, shard) not in written:
                extra = text_export.write_text_shard(shard, [], plan, output_dir)
                counts.update(extra.counts)
                files.extend(extra.files)
        elif "tfrecord/" + writers.shard_name(f"{plan.mixture}-{plan.split}", shard, plan.num_shards, ".tfrecord") not in written:
            extra = write_packed_shard(shard, [], plan, output_dir)
            counts.update(extra.counts)
            files.extend(extra.files)
    return Report(dict(counts), tuple(sorted(files, key=lambda f: f.path)))
