"""The survey's part of `--cache`: one entry per source file holding what `stages.survey.survey_shard`
found in it (its row count and its smallest-hash pool rows), so a build whose files did not change
does not read them twice (once to survey, once to serve nothing from them).

    <cache>/v1/<key[:2]>/<key>.entry   one "S" frame: JSON {"count": n, "pool": [[hash, row id, fields], ...]}

Keyed by the file's SHA-256, the shard (dataset, split, loader, arguments, index) and what the
survey depends on beside the rows: the seed, the pool size, the dataset's declared fields, the
flanmix version and code fingerprint (`keys.survey_key`). Only loaders whose fields are JSON values as
read (`JSON_FIELD_LOADERS`: a JSON round trip gives back equal values, so the sampling table is the
cold build's) are served; any other shard, or a missing or corrupt entry, is surveyed as without
`--cache` and its entry stored (failures to store are warnings, never a failed build).
"""
from __future__ import annotations

from pipelines import counters
from pipelines.cache import keys, store
from pipelines.loaders import SourceShard

JSON_FIELD_LOADERS = frozenset({"cot_tsv", "niv2_json", "jsonl", "csv"})


def cached_survey_shard(shard: SourceShard, plan, cache_dir: str, common: str, survey):
    """`survey(shard, plan)`'s single (task, count, pool), from the shard's entry or surveyed and stored."""
    path = keys.source_file(shard) if shard.loader_type in JSON_FIELD_LOADERS else None
    if path is None:
        yield from survey(shard, plan)
        return
    sha = keys.file_sha256(path)
    key = keys.survey_key(common, shard, sha)
    entry, _ = store.load(cache_dir, key, f"{keys.describe(shard)} (survey)")
    found = [f[1] for f in entry.frames if f[0] == "S"] if entry is not None else []
    if len(found) == 1:
        counters.SURVEYS_SERVED.counter(shard.dataset).inc()
        yield shard.dataset, found[0]["count"], tuple((h, r, f) for h, r, f in found[0]["pool"])
        return
    (task, count, pool), = list(survey(shard, plan))
    writer = store.SafeWriter(cache_dir, key, {"format": keys.FORMAT_VERSION, "dataset": shard.dataset,
                                               "source": f"{path} (survey)"}, f"{keys.describe(shard)} (survey)")
    writer.survey({"count": count, "pool": [list(p) for p in pool]})
    if keys.file_sha256(path) != sha:  # changed while it was surveyed
        writer.abort()
    writer.commit()
    yield task, count, pool
