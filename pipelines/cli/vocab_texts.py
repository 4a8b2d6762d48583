"""What `flanmix vocab train` trains SentencePiece on: every template's text, then every string
field of every source row of the mixture's datasets, in a fixed order (so the model is reproducible
byte for byte)."""
from __future__ import annotations

import json
from typing import Iterator

from pipelines.loaders import get_loader


def vocabulary_texts(entries, families) -> Iterator[str]:
    for fam_name in sorted({f for e in entries for f in e.templates}):
        for t in families[fam_name].templates:
            yield t.inputs
            yield t.targets
    for entry in entries:
        loader = get_loader(entry.loader_type)
        for split, source in sorted(entry.splits.items()):
            for shard in loader.plan(entry.name, split, source, entry.loader_args):
                for row in loader.read(shard):
                    for value in (row.fields or {}).values():
                        if isinstance(value, str):
                            yield value
                        elif isinstance(value, list):
                            yield from (json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v for v in value)
