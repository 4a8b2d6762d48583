"""`--cache DIR|gs://...|s3://...`: a content-addressed cache of each source file's tokenized examples.

A build with a cache reads, renders and tokenizes a source file only when no entry for its key is
stored (`keys.entry_key`: the task's catalog entry, the template files and bound templates it uses,
the vocabulary's SHA-256, seed, lengths, layout, shard count, few-shot and render settings, the
flanmix version and a fingerprint of its code, the SHA-256 of the source file's bytes and the task's
row of the sampling table: rate, prompt settings, exemplar pool). An entry holds what the three
stages emitted for that file, in order: the (output shard, ShardItems) batches, the dead letters and
the counts (rows read, sampled out, upsampled, truncated, few-shot fitting), so packing, writing and
the manifest downstream see exactly what a cold build gives them (`store` for the format,
`stage.CachedEncode` for the graph's hook). Beside those: per few-shot task an index of its exemplar
groups' entries (`stage.TaskGate`), per source file what the survey found in it (`survey`), and per
build the published corpus (`corpus`).
"""
