"""Where a build publishes: the destination (plain or versioned), the refusal to replace a corpus
without --overwrite, and the staging prefix named by the run id (a pure function of the plan's
identity, never of time or workers). See `publish.commit` for the whole protocol."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from apache_beam.io.filesystems import FileSystems

from flanmix_corpus.reader import MANIFEST_NAME
from pipelines.errors import FlanmixError

STAGING_PREFIX = ".staging-"


class PublishError(FlanmixError):
    """The output exists and may not be replaced, or staged files do not match what was written."""


class LeaseHeld(PublishError):
    """Another build holds the output's lease, or took it at the same moment (publish.lease)."""


def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base.rstrip("/") or "/", *parts)


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def manifest_path(output_dir: str) -> str:
    return _join(output_dir, MANIFEST_NAME)


def _canonical(value):
    """A JSON-able, order-independent view of a plan (dataclasses, mappings, sets, tuples)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_canonical(v) for v in value), key=repr)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def run_id(plan) -> str:
    """12 hex digits of the SHA-256 of the plan: the same build gets the same staging prefix."""
    text = json.dumps(_canonical(plan), sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def staging_dir(output_dir: str, plan) -> str:
    return _join(output_dir, STAGING_PREFIX + run_id(plan))


def complete_versions(base: str) -> list[int]:
    """N of every `base/vN/` that holds a manifest, ascending (storage errors propagate: guessing v1
    for an unreachable bucket would be wrong)."""
    found = FileSystems.match([_join(base, "v*", MANIFEST_NAME)])[0].metadata_list
    versions = set()
    for meta in found:
        match = re.search(r"/v(\d+)/" + re.escape(MANIFEST_NAME) + "$", meta.path)
        if match:
            versions.add(int(match.group(1)))
    return sorted(versions)


def resolve_output(output: str, mixture: str, versioned: bool = False) -> str:
    """OUTPUT, or OUTPUT/MIXTURE/vN for a versioned build: N one more than the newest complete
    version, skipping versions a running build holds (its lease is live), so concurrent versioned
    builds of one root publish side by side."""
    if not versioned:
        return output
    from pipelines.publish.lease import held_by_live_build

    base = _join(output, mixture)
    n = max(complete_versions(base), default=0) + 1
    while held_by_live_build(_join(base, f"v{n}")):
        n += 1
    return _join(base, f"v{n}")


def check_destination(output_dir: str, overwrite: bool) -> None:
    """Refuse to build into a complete corpus unless `overwrite`."""
    if not overwrite and _exists(manifest_path(output_dir)):
        raise PublishError(
            f"{output_dir} already holds a complete corpus ({MANIFEST_NAME}); pass --overwrite "
            f"to replace it, --versioned to publish a new version next to it, or choose another --output"
        )
