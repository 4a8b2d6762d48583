"""`--formats`: which file formats a packed build writes (TFRecord, Parquet or both).

Both by default. A consumer that reads only one of them (the Hugging Face / Polars / DuckDB path reads
Parquet; seqio and tf.data read TFRecord) asks for that one, and the build encodes and writes half as
much: serializing the rows into two formats was a third of a build's write stage. The choice is
checked when the plan is made, before the job launches, and the manifest's `formats` lists what was
written when it is not the default (a default build's manifest is byte-identical to one made before
this option existed; no `formats` key means both).

    >>> parse_formats("parquet")
    ('parquet',)
    >>> parse_formats("tfrecord, parquet")
    ('tfrecord', 'parquet')
"""
from __future__ import annotations

from typing import Iterable

from pipelines.errors import FlanmixError

TFRECORD, PARQUET = "tfrecord", "parquet"
FILE_FORMATS = (TFRECORD, PARQUET)  # the order files are written and listed in
DEFAULT_FORMATS = FILE_FORMATS


def parse_formats(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """A comma-separated list (or an iterable) of formats, validated, in canonical order; None: both."""
    if text is None:
        return DEFAULT_FORMATS
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(FILE_FORMATS))
    if unknown or not names:
        raise FlanmixError(f"--formats {','.join(names) if names else repr(text)}: use one or both of "
                           f"{','.join(FILE_FORMATS)} (comma-separated){'; unknown: ' + ', '.join(unknown) if unknown else ''}")
    return tuple(f for f in FILE_FORMATS if f in names)
