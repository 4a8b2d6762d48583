"""`--format jsonl`: the rendered text of every example, unpacked and untokenized, for people who want
the prompts themselves (as the Flan Collection's public exports give them).

    rendered | WriteText(plan, out)  ->  jsonl/MIXTURE-SPLIT-SSSSS-of-NNNNN.jsonl  (schemas/text_export.schema.json)

Each example goes to the shard the packed output would put it in and keeps the same order inside it
(keyed hashes of (seed, dataset, row id)), so a jsonl and a packed build of one plan hold the same
examples shard for shard. No sequence lengths apply: nothing is cut and a few-shot prompt keeps all
of its exemplars. One line:

    {"collection": "cot", "dataset": "cot_gsm8k", "id": "cot_gsm8k|cot_qa_reason_then_answer|zs_noopt|train:12",
     "inputs": "...", "prompt_setting": "zs_noopt", "row_id": "train:12", "targets": "...",
     "template_id": "cot_qa_reason_then_answer"}
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Iterator

import apache_beam as beam

from pipelines import counters
from pipelines.planning import exemplars
from pipelines.planning.fewshot import assemble_few_shot
from pipelines.formats import writers
from pipelines.planning.hashing import placement
from pipelines.planning.plan import BuildPlan
from pipelines.planning.slices import OutputSlice, TextSlice
from pipelines.counters import count_example
from pipelines.records import RenderedExample, Report, TextItem, TextItems, provenance

TEXT_DIR = "jsonl"


def text_record(plan: BuildPlan, dataset: str, rendered: RenderedExample) -> dict:
    """One rendered example, as RenderTemplates emits it, to the record of a jsonl line."""
    shots = rendered.shots
    if isinstance(shots, exemplars.FewShotPrompt):  # exemplars from the row's group, all of them
        inputs = shots.text(len(shots.shots))
    else:
        inputs = assemble_few_shot(shots, rendered.inputs, plan.few_shot) if shots else rendered.inputs
    return {
        "id": provenance(dataset, rendered.template_id, rendered.setting, rendered.key),
        "dataset": dataset,
        "collection": plan.datasets[dataset].collection,
        "template_id": rendered.template_id,
        "prompt_setting": rendered.setting,
        "row_id": rendered.key,
        "inputs": inputs,
        "targets": rendered.targets,
    }


def text_line(record: dict) -> str:
    """The record as one line (json escapes newlines, so a line is always one example)."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def key_by_shard(element, plan: BuildPlan) -> Iterator[tuple[int, TextItems]]:
    """(shard, TextItems) for one rendered batch: the packed output's shard and order."""
    dataset, examples = element
    by_shard: dict[int, TextItems] = {}
    for rendered in examples:
        record = text_record(plan, dataset, rendered)
        key = record["row_id"]
        shard, order = placement(plan.seed, plan.num_shards, dataset, key)
        by_shard.setdefault(shard, TextItems()).append(TextItem(order, record["id"], text_line(record)))
    yield from by_shard.items()


def shard_lines(batches: Iterable) -> list[str]:
    """One shard's lines in their deterministic order, whatever order the batches arrived in."""
    items = [item for batch in batches for item in batch]
    items.sort(key=lambda it: (it.order, it.id))
    return [it.line for it in items]


def text_report(lines: list[str], files) -> Report:
    counts: Counter = Counter()
    counts[counters.ROWS.key()] += len(lines)
    for line in lines:
        count_example(counts, json.loads(line)["id"])
    return Report(dict(counts), tuple(files))


def shard_path(plan: BuildPlan, shard: int) -> str:
    return f"{TEXT_DIR}/" + writers.shard_name(f"{plan.mixture}-{plan.split}", shard, plan.num_shards, ".jsonl")


def write_text_shard(shard: int, batches, plan: BuildPlan, output_dir: str) -> Report:
    """Write one shard's JSONL file (an empty file for no batches); its Report."""
    lines = shard_lines(batches)
    written = writers.write_file(output_dir, shard_path(plan, shard), "".join(lines).encode("utf-8"), len(lines))
    return text_report(lines, [written])


class WriteTextShardFn(beam.DoFn):
    def __init__(self, plan: BuildPlan, output_dir: str):
        self.plan, self.output_dir = plan, output_dir

    def process(self, element):
        shard, batches = element
        report = write_text_shard(shard, batches, self.plan, self.output_dir)
        counters.WRITTEN_ROWS.counter().inc(report.counts.get(counters.ROWS.key(), 0))
        yield report


class WriteText(beam.PTransform):
    """Rendered batches -> one JSONL file per output shard that receives rows (`stages.finish.finish_corpus`
    writes the empty files of the others)."""

    def __init__(self, plan: BuildPlan, output_dir: str):
        super().__init__()
        self.plan, self.output_dir = plan, output_dir

    def expand(self, rendered):
        return (
            rendered
            | "KeyByShard" >> beam.FlatMap(key_by_shard, TextSlice.of(self.plan))
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteTextShard" >> beam.ParDo(WriteTextShardFn(OutputSlice.of(self.plan), self.output_dir))
        )
