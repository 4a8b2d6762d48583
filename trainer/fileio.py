"""Reading checkpoint files from a local path or a bucket URL (gs://, s3://), the way the rest of
flanmix reaches buckets: Apache Beam's `FileSystems` (already a dependency, with GCS and S3 support
and the same credentials a build uses). Local paths use plain `open`; Beam loads only for URLs."""
from __future__ import annotations

import os


def is_url(path: str) -> bool:
    return "://" in path


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}" if is_url(root) else os.path.join(root, name)


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def read_bytes(path: str) -> bytes:
    if not is_url(path):
        with open(path, "rb") as f:
            return f.read()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def list_dir(path: str) -> list[str]:
    """Names (not paths) of the entries directly under `path`."""
    if not is_url(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    from apache_beam.io.filesystems import FileSystems

    prefix = path.rstrip("/") + "/"
    names = set()
    for result in FileSystems.match([prefix + "*"]):
        for meta in result.metadata_list:
            rest = meta.path[len(prefix):]
            if rest:
                names.add(rest.split("/", 1)[0])
    return sorted(names)
