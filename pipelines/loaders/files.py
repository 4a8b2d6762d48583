"""File access for loaders: local, gs:// and s3:// paths through Beam FileSystems; http(s):// URLs
through urllib (one file per URL, no globbing).

    >>> expand("task_catalog/data/cot/*.tsv", "dataset cot_gsm8k")[0]
    ('/.../task_catalog/data/cot/aqua_train.tsv', 201512)
"""
from __future__ import annotations

import functools
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import LoaderError

HTTP_TIMEOUT_S = 15


def source_path(args: Mapping[str, Any], name_key: str, relative: str, root_env: str, default_root: str) -> str | None:
    """The file an entry reads: `args["path"]`, else `<root>/<relative>` formatted with `args[name_key]`,
    where root is `args["root"]`, else $`root_env`, else `default_root`. None when neither is given.

    >>> source_path({"file": "a.tsv", "root": "/d/"}, "file", "{}", "X_ROOT", "https://h")
    '/d/a.tsv'
    """
    if args.get("path"):
        return str(args["path"])
    if not args.get(name_key):
        return None
    root = str(args.get("root") or os.environ.get(root_env) or default_root).rstrip("/")
    return f"{root}/{relative.format(args[name_key])}"


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def is_local(path: str) -> bool:
    """True for plain local paths (and file://), i.e. readable without any network."""
    return "://" not in path or path.startswith("file://")


def with_hint(message: str, args: Mapping[str, Any] | None) -> str:
    """Append the entry's `loader.args.hint` (how to obtain this dataset) to an error message."""
    hint = (args or {}).get("hint")
    return f"{message} Note for this dataset: {hint}" if hint else message


@functools.lru_cache(maxsize=64)
def unreachable(host: str, port: int = 443, timeout: float = 3.0) -> str | None:
    """Why `host` cannot be reached (None if it can). Checked once per process and host, so a
    mixture of hundreds of hub-hosted datasets fails in seconds offline instead of retrying each."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable from this machine ({exc})"


def _probe_url(url: str, what: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    why = unreachable(parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
    if why:
        raise LoaderError(
            f"{what}: tried to reach {url}, but {why}. Download it on a machine with internet access and "
            f"point the catalog entry's loader.args at the local copy (or a gs:// / s3:// URL)."
        )
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310 - URL from the catalog
            return int(response.headers.get("Content-Length") or 0)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LoaderError(
            f"{what}: tried to reach {url} and failed ({reason}). Download it on a machine with internet "
            f"access and point the catalog entry's loader.args at the local copy (or a gs:// / s3:// URL)."
        ) from None


def expand(pattern: str, what: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of the files matching `pattern` (a path, glob or URL), sorted by path;
    LoaderError if none."""
    if is_url(pattern):
        return [(pattern, _probe_url(pattern, what))]
    try:
        results = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError for unreachable schemes/buckets
        raise LoaderError(f"{what}: could not list {pattern}: {exc}") from None
    paths = sorted((m.path, m.size_in_bytes) for m in results)
    folders = [p for p, _ in paths if is_local(p) and os.path.isdir(p[len("file://"):] if p.startswith("file://") else p)]
    if folders:  # Beam's local match lists a folder as a file of 4096 bytes; reading it fails on a worker
        raise LoaderError(f"{what}: {folders[0]} is a directory, not a file (loader.args.path names files; "
                          f"use a glob such as {folders[0].rstrip('/')}/*.jsonl)")
    if not paths:
        raise LoaderError(
            f"{what}: no file matches {pattern}. Download the data and point the catalog entry's "
            f"loader.args at a local copy (or a gs:// / s3:// URL the job can read)."
        )
    return paths


def exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - an unreachable bucket counts as absent
        return False


def read_bytes(path: str) -> bytes:
    if is_url(path):
        try:
            with urllib.request.urlopen(path, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310
                return response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise LoaderError(f"could not download {path}: {getattr(exc, 'reason', exc)}") from None
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        return handle.read()


def open_binary(path: str):
    """A seekable binary handle (no decompression) for formats that read parts of a file (Parquet)."""
    if is_url(path):
        import io

        return io.BytesIO(read_bytes(path))
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
