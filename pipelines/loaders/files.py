"""File access for loaders through Beam FileSystems, so local, gs:// and s3:// paths all work."""
from __future__ import annotations

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import LoaderError


def expand(pattern: str, what: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of the files matching `pattern` (a path or glob), sorted by path;
    LoaderError if none."""
    try:
        results = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # Beam raises BeamIOError for unreachable schemes/buckets
        raise LoaderError(f"{what}: could not list {pattern}: {exc}") from None
    paths = sorted((m.path, m.size_in_bytes) for m in results)
    if not paths:
        raise LoaderError(
            f"{what}: no file matches {pattern}. Download the data and point the catalog entry's "
            f"loader.args at a local copy (or a gs:// / s3:// URL the job can read)."
        )
    return paths


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        return handle.read()
