"""One build at a time per output, and no files beside a manifest that it does not list.

**Lease.** A publish removes every `.staging-*` prefix under its output (those of builds that died),
so a second build into the same output would delete a running build's staged files. The launcher
therefore takes a lease first: `OUTPUT/.flanmix-lease.json` naming a random token, the host, the
process and an expiry (`LEASE_SECONDS`). A second build finds a live lease and refuses with a
message naming the holder; a lease is dead when it has expired, or when it names a process of this
host that no longer runs (a `kill -9`). Works on every Beam filesystem: the lease is written, then
read back, and the build goes on only if it still names this build's token (the later of two racing
writers wins, the other refuses). The lease is released when the build ends, however it ends.

**Unlisted files.** A killed `--num_shards 200` build followed by a `--num_shards 4` build left 204
Parquet files next to a manifest listing 8, and `parquet/*.parquet` read rows twice. The commit now
removes, from the corpus folders (`DATA_FOLDERS`), every file the new manifest does not list
(`remove_unlisted`), before the manifest is moved into place.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from typing import Iterable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

LEASE_NAME = ".flanmix-lease.json"
LEASE_SECONDS = 24 * 3600  # longer than any build; a dead holder on this host is detected sooner
DATA_FOLDERS = ("tfrecord", "parquet", "jsonl", "dead_letter")


def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if "://" in base else os.path.join(base, *parts)


def _read_lease(path: str) -> dict | None:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            value = json.loads(handle.read().decode("utf-8"))
        return value if isinstance(value, dict) else None
    except Exception:  # noqa: BLE001 - absent or unreadable: no live lease
        return None


def _alive(lease: dict) -> bool:
    if float(lease.get("expires", 0)) < time.time():
        return False
    if lease.get("host") == socket.gethostname() and isinstance(lease.get("pid"), int):
        try:
            os.kill(lease["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _write(path: str, lease: dict) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(json.dumps(lease, sort_keys=True).encode("utf-8"))


@contextlib.contextmanager
def lease(output_dir: str, seconds: float = LEASE_SECONDS) -> Iterator[dict]:
    """Hold the output's lease while the block runs; PublishError if another build holds it."""
    from pipelines.publish.staging import PublishError

    path = _join(output_dir, LEASE_NAME)
    held = _read_lease(path)
    if held is not None and _alive(held):
        raise PublishError(
            f"{output_dir}: another build is writing here (started {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(held.get('started', 0)))} UTC "
            f"by process {held.get('pid')} on {held.get('host')}); wait for it to finish, or remove {path} if it is dead")
    mine = {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.time(), "expires": time.time() + seconds}
    _write(path, mine)
    if (_read_lease(path) or {}).get("token") != mine["token"]:
        raise PublishError(f"{output_dir}: another build took the lease at the same moment; not starting")
    try:
        yield mine
    finally:
        if (_read_lease(path) or {}).get("token") == mine["token"]:
            with contextlib.suppress(Exception):
                FileSystems.delete([path])


def remove_unlisted(output_dir: str, listed: Iterable[str], listing) -> list[str]:
    """Delete files under the corpus folders of `output_dir` that are not in `listed` (paths relative
    to the output). `listing(prefix)` lists a prefix (publish._listing). Returns what was removed."""
    def norm(path: str) -> str:
        return path if "://" in path else os.path.abspath(path)

    keep = {norm(_join(output_dir, p)) for p in listed}
    stale = sorted(p for folder in DATA_FOLDERS for p in listing(_join(output_dir, folder)) if norm(p) not in keep)
    if stale:
        FileSystems.delete(stale)
    return stale
