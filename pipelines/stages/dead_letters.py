"""WriteDeadLetters: every stage's dead-letter records -> sharded JSONL files under the staging prefix.

    dead-letter records | WriteDeadLetters(plan, staging)  ->  Report per file written (counts + file)

A record goes to dead-letter shard `keyed_hash(seed, "dead_letter", dataset, row id, stage) % N`
(N = `plan.dead_letter_shards`, from the plan's source size: one per 64 MiB of source, like the
output shards before they were sized by output), so the workers that hold a shard write it and no
worker ever joins all of them (they used to travel inside the merged Report to one worker). Each
file is the shard's records as JSON objects with sorted keys, one a line, sorted by (dataset, row
id, stage) and then by the line itself, so its bytes depend only on the plan. The file reports its
records' counts (`counters.DEAD_LETTERS`, per dataset and stage): the manifest counts them exactly.
`finish.finish_corpus` writes the shards that received no record as empty files, so the series
`dead_letter/dead_letter-SSSSS-of-NNNNN.jsonl` is always complete.
"""
from __future__ import annotations

import json
from collections import Counter

import apache_beam as beam

from pipelines import counters
from pipelines.formats import writers
from pipelines.planning.hashing import keyed_hash
from pipelines.records import Report, dead_letter_key

FOLDER = "dead_letter"


def shard_path(index: int, count: int) -> str:
    """`dead_letter/dead_letter-SSSSS-of-NNNNN.jsonl`."""
    return f"{FOLDER}/" + writers.shard_name(FOLDER, index, count, ".jsonl")


def shard_of(record: dict, seed: int, count: int) -> int:
    return keyed_hash(seed, "dead_letter", record["dataset"], record["row_id"], record["stage"]) % count


def write_dead_letter_shard(index: int, records, count: int, output_dir: str) -> Report:
    """Write one dead-letter shard (sorted JSONL) and report its file and its counts."""
    lines = sorted(((dead_letter_key(r), json.dumps(r, ensure_ascii=False, sort_keys=True)) for r in records))
    data = "".join(line + "\n" for _, line in lines).encode("utf-8")
    tally = Counter(counters.DEAD_LETTERS.key(key[0], key[2]) for key, _ in lines)
    written = writers.write_file(output_dir, shard_path(index, count), data, len(lines))
    return Report(dict(tally), (written,))


class WriteDeadLetters(beam.PTransform):
    """Dead-letter records -> one Report per non-empty dead-letter shard."""

    def __init__(self, seed: int, count: int, output_dir: str):
        super().__init__()
        self.seed, self.count, self.output_dir = seed, count, output_dir

    def expand(self, records):
        seed, count, output_dir = self.seed, self.count, self.output_dir
        return (
            records
            | "ByDeadLetterShard" >> beam.Map(lambda r: (shard_of(r, seed, count), r))
            | "GroupDeadLetters" >> beam.GroupByKey()
            | "WriteDeadLetterShard" >> beam.Map(lambda kv: write_dead_letter_shard(kv[0], kv[1], count, output_dir))
        )
