"""Tokenize: (dataset, [RenderedExample]) -> (shard, [ShardItem]) batches.

Encodes a batch with SentencePiece, fits few-shot prompts to the inputs budget, appends EOS, applies
the overlong policy (`formats.fit`) and places each example in its output shard and order
(`planning.hashing.placement`).
"""
from __future__ import annotations

from collections import Counter

import apache_beam as beam

from flanmix_corpus.layouts import LAYOUT_DECODER
from pipelines.formats.fit import fit_example
from pipelines import counters
from pipelines.planning import exemplars
from pipelines.planning.fewshot import fit_few_shot
from pipelines.planning.hashing import placement
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import TokenizeSlice
from pipelines.records import DEAD_LETTER, STATS, Report, ShardItem, ShardItems, dead_letter, new, provenance
from pipelines.runner import startup_heap
from pipelines.vocab import worker_vocabulary


class TokenizeBatchFn(beam.DoFn):
    """Encodes a batch with SentencePiece, fits few-shot prompts to the inputs budget (dropping whole
    exemplars from the end, never cutting one), appends EOS, applies the overlong policy and assigns
    each example its output shard and its place in that shard from (seed, dataset, copy key)."""

    def __init__(self, plan: TokenizeSlice | BuildPlan, model_proto: bytes | None, num_threads: int = -1):
        """`model_proto`: see `vocab.shipped_model` (None: the packaged default)."""
        self.plan = plan
        self.model_proto = model_proto
        self.num_threads = num_threads

    def setup(self):
        startup_heap.freeze_once_in_worker()
        self.vocab = worker_vocabulary(self.model_proto, self.plan.vocab_path, self.plan.vocab_sha256)

    def _fit_pool_shots(self, query: str, query_ids: list[int], shots: tuple) -> tuple[list[int], int]:
        """A prompt with exemplars from the survey's pool (a tuple of texts), fitted on its own; prompts
        with exemplars from the row's group are fitted a batch at a time (`exemplars.fit_batch`)."""
        return fit_few_shot(self.vocab, query, query_ids, shots, self.plan.inputs_length - 1, self.plan.few_shot)

    def process(self, element):
        dataset, examples = element
        plan = self.plan
        ids = self.vocab.encode_batch(
            [e.inputs for e in examples] + [e.targets for e in examples], num_threads=self.num_threads
        )
        n = len(examples)
        grouped = [i for i, e in enumerate(examples) if isinstance(e.shots, exemplars.FewShotPrompt)]
        fitted = dict(zip(grouped, exemplars.fit_batch(  # exemplars from the row's group: fitted together
            self.vocab, [ids[i] for i in grouped], [examples[i].shots for i in grouped], plan.inputs_length - 1)))
        by_shard: dict[int, ShardItems] = {}
        counts: Counter = Counter()
        for i, example in enumerate(examples):
            key, setting, shots = example.key, example.setting, example.shots
            input_ids = ids[i]
            if shots:
                input_ids, k = fitted[i] if i in fitted else self._fit_pool_shots(example.inputs, input_ids, shots)
                counts[counters.FEWSHOT_K.key(str(k))] += 1
                n_shots = len(shots.shots) if isinstance(shots, exemplars.FewShotPrompt) else len(shots)
                if k < n_shots:
                    counts[counters.FEWSHOT_DROPPED.key(dataset)] += n_shots - k
                if k == 0:
                    setting = "zs_" + setting.split("_")[1]  # nothing fits beside the query
                    counts[counters.FEWSHOT_FELL_BACK.key(dataset)] += 1
            inputs, targets, cut = fit_example(input_ids, ids[n + i], plan.layout, plan.inputs_length,
                                               plan.targets_length, plan.decoder_length)
            if cut:
                if plan.overlong == "drop":
                    budget = (f"{plan.decoder_length} (decoder)" if plan.layout == LAYOUT_DECODER
                              else f"{plan.inputs_length}/{plan.targets_length}")
                    reason = f"overlong: {len(input_ids) + 1} inputs / {len(ids[n + i]) + 1} targets tokens > {budget}"
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(dataset, key, "tokenize", reason))
                    continue
                counts[counters.TRUNCATED.key(dataset)] += 1
            shard, order = placement(plan.seed, plan.num_shards, dataset, key)
            items = by_shard.get(shard)
            if items is None:
                items = by_shard[shard] = ShardItems()
            items.append(
                new(ShardItem, (order, inputs.tobytes(), targets.tobytes(), provenance(dataset, example.template_id, setting, key)))
            )
        for shard, items in by_shard.items():
            yield shard, items
        if counts:
            yield beam.pvalue.TaggedOutput(STATS, Report(dict(counts)))


class Tokenize(beam.PTransform):
    """(dataset, [RenderedExample]) -> `.tokenized` (shard, [ShardItem]), [DEAD_LETTER], [STATS]."""

    def __init__(self, plan: BuildPlan, model_proto: bytes, num_threads: int = -1):
        super().__init__()
        self.plan, self.model_proto, self.num_threads = plan, model_proto, num_threads

    def expand(self, rendered):
        return rendered | "Encode" >> beam.ParDo(
            TokenizeBatchFn(TokenizeSlice.of(self.plan), self.model_proto, self.num_threads)
        ).with_outputs(DEAD_LETTER, STATS, main="tokenized")
