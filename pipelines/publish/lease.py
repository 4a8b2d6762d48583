"""One build at a time per output, and no files beside a manifest that it does not list.

**Lease.** A second build into the same output would race the first one's commit (and, before the
lease, deleted its staged files). The launcher therefore takes a lease first:
`OUTPUT/.flanmix-lease.json` naming a random token, the host, the process, this build's staging
prefix and an expiry (`LEASE_SECONDS`). A second build finds a live lease and refuses with a
message naming the holder (`LeaseHeld`); a lease is dead when it has expired, or when it names a
process of this host that no longer runs (a `kill -9`). The build that takes over a dead lease
removes the dead build's staging prefix (unless it is its own: the same plan re-run reuses it).
The lease is released when the build ends, however it ends.

How strong it is depends on what the store offers (`_Store`):

- local paths: written to a private file and hard-linked into place (fails if one exists; a racer
  never reads a half-written lease, which would look dead). A dead lease is taken over holding an
  exclusive `flock` on the output folder (the kernel releases it if the build dies): re-read, and
  replaced in one `os.replace` only if it is still the lease judged dead; a release checks and
  deletes under the same lock. The lease file is never absent during a takeover, so no racer's
  create slips in (moving it aside and back, as before, let a third build create one meanwhile:
  two winners, ~1 run in 8 of the racing test). Exactly one of racing builds wins.
- s3://: a conditional PUT, `If-None-Match: *` to create and `If-Match: <ETag>` to take over a
  dead lease (S3 has enforced both since 2024; the moto emulator in the tests does too). Exactly
  one of two racing builds wins.
- gs://: `ifGenerationMatch=0` to create and `ifGenerationMatch=<generation>` to take over (GCS
  enforces both; the gcp-storage-emulator used in the tests ignores preconditions, so there only
  the read-back below holds).
- any other Beam filesystem: write, then read back; the build goes on only if the lease still
  names its token (the later of two racing writers wins; a writer that raced within the store's
  read-after-write window may not notice).

On every store the lease is also read back after it is taken. Releasing reads the lease and
deletes it only if it still names this build's token (a lease taken over meanwhile is left alone;
between that read and the delete there is no precondition, a window of one request).

**Unlisted files.** A killed `--num_shards 200` build followed by a `--num_shards 4` build left 204
Parquet files next to a manifest listing 8, and `parquet/*.parquet` read rows twice. The commit
removes, from the corpus folders (`DATA_FOLDERS`), every file the new manifest does not list, right
after the manifest switch (`publish.commit`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from typing import Iterable, Iterator

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.publish.staging import LeaseHeld

LEASE_NAME = ".flanmix-lease.json"
LEASE_SECONDS = 24 * 3600  # longer than any build; a dead holder on this host is detected sooner
DATA_FOLDERS = ("tfrecord", "parquet", "jsonl", "dead_letter")


def _join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts) if "://" in base else os.path.join(base, *parts)


def _parse(data: bytes | None) -> dict | None:
    if data is None:
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class _Store:
    """get / create-if-absent / replace-if-unchanged for one object, as strongly as the scheme allows."""

    def __init__(self, path: str):
        self.path = path
        self.scheme = path.split("://", 1)[0] if "://" in path else "file"

    # version: local -> the bytes read; s3 -> ETag; gs -> generation; other -> None
    def get(self) -> tuple[bytes, object] | None:
        if self.scheme == "s3":
            client, bucket, key = self._s3()
            try:
                got = client.get_object(Bucket=bucket, Key=key)
            except client.exceptions.NoSuchKey:
                return None
            return got["Body"].read(), got["ETag"]
        if self.scheme == "gs":
            blob = self._gcs_blob()
            if not blob.exists():
                return None
            blob.reload()
            return blob.download_as_bytes(if_generation_match=blob.generation), blob.generation
        if self.scheme == "file":
            try:
                with open(self.path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                return None
            return data, data
        try:
            with FileSystems.open(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                return handle.read(), None
        except Exception:  # noqa: BLE001 - absent
            return None

    def create(self, data: bytes) -> bool:
        """Write `data` if the object does not exist; False if it does."""
        if self.scheme == "s3":
            client, bucket, key = self._s3()
            return self._s3_put(client, bucket, key, data, IfNoneMatch="*")
        if self.scheme == "gs":
            return self._gcs_put(data, 0)
        if self.scheme == "file":
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            fresh = f"{self.path}.{uuid.uuid4().hex}.new"
            with open(fresh, "wb") as handle:
                handle.write(data)
            try:  # the lease appears whole: a racer never reads it empty and judges it dead
                os.link(fresh, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # a filesystem without hard links: create-exclusive, then write
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                return True
            finally:
                os.unlink(fresh)
        self._write_plain(data)
        return True

    def replace(self, data: bytes, version) -> bool:
        """Write `data` only if the object is still the `version` read; False otherwise."""
        if self.scheme == "s3":
            client, bucket, key = self._s3()
            return self._s3_put(client, bucket, key, data, IfMatch=version)
        if self.scheme == "gs":
            return self._gcs_put(data, version)
        if self.scheme == "file":
            with self._takeover_lock():  # one takeover at a time; creates need no lock
                try:
                    with open(self.path, "rb") as handle:
                        if handle.read() != version:
                            return False  # someone took it over (or its holder rewrote it) first
                except FileNotFoundError:
                    return False
                fresh = f"{self.path}.{uuid.uuid4().hex}.new"
                with open(fresh, "wb") as handle:
                    handle.write(data)
                os.replace(fresh, self.path)
                return True
        self._write_plain(data)
        return True

    @contextlib.contextmanager
    def _takeover_lock(self):
        """An exclusive flock on the lease's folder (the kernel releases it if the process dies)."""
        fd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def delete_if(self, version) -> None:
        """Delete the lease if it is still `version` (local: checked and deleted under the takeover
        lock, so a release never removes a lease taken over between the check and the delete)."""
        if self.scheme == "file":
            with contextlib.suppress(OSError), self._takeover_lock():
                with open(self.path, "rb") as handle:
                    if handle.read() == version:
                        os.unlink(self.path)
            return
        self.delete()

    def delete(self) -> None:
        with contextlib.suppress(Exception):
            FileSystems.delete([self.path])

    def _write_plain(self, data: bytes) -> None:
        with FileSystems.create(self.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            handle.write(data)

    def _s3(self):
        from apache_beam.io.aws.clients.s3 import boto3_client
        from apache_beam.options.pipeline_options import PipelineOptions

        from pipelines.runner import worker_fs

        worker_fs.cache_s3_clients()
        client = boto3_client.Client(options=FileSystems._pipeline_options or PipelineOptions([])).client
        bucket, _, key = self.path[len("s3://"):].partition("/")
        return client, bucket, key

    @staticmethod
    def _s3_put(client, bucket, key, data, **condition) -> bool:
        from botocore.exceptions import ClientError

        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, **condition)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412):
                return False
            raise
        return True

    def _gcs_blob(self):
        from apache_beam.io.gcp import gcsio

        bucket, _, key = self.path[len("gs://"):].partition("/")
        return gcsio.GcsIO(pipeline_options=FileSystems._pipeline_options).client.bucket(bucket).blob(key)

    def _gcs_put(self, data: bytes, generation) -> bool:
        from google.api_core import exceptions

        try:
            self._gcs_blob().upload_from_string(data, if_generation_match=generation)
        except exceptions.PreconditionFailed:
            return False
        return True


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


def _held_message(output_dir: str, path: str, held: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(held.get("started", 0)))
    return (f"{output_dir}: another build is writing here (started {started} UTC by process {held.get('pid')} on "
            f"{held.get('host')}); wait for it to finish, or remove {path} if it is dead")


def _error(message: str) -> LeaseHeld:
    return LeaseHeld(message)


def held_by_live_build(output_dir: str) -> bool:
    """Whether a live build holds `output_dir`'s lease (used to pick a free --versioned version)."""
    got = _Store(_join(output_dir, LEASE_NAME)).get()
    held = _parse(got[0]) if got else None
    return held is not None and _alive(held)


@contextlib.contextmanager
def lease(output_dir: str, seconds: float = LEASE_SECONDS, staging: str | None = None) -> Iterator[dict]:
    """Hold the output's lease while the block runs; `LeaseHeld` (a PublishError) if another
    build holds it. `staging`: this build's staging prefix, recorded so that whoever takes over a
    dead lease can remove it."""
    path = _join(output_dir, LEASE_NAME)
    store = _Store(path)
    mine = {"token": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
            "started": time.time(), "expires": time.time() + seconds,
            "staging": staging.rstrip("/").rsplit("/", 1)[-1] if staging else None}
    data = json.dumps(mine, sort_keys=True).encode("utf-8")
    dead_staging = None
    if not store.create(data):
        got = store.get()
        held = _parse(got[0]) if got else None
        if held is not None and _alive(held):
            raise _error(_held_message(output_dir, path, held))
        taken = store.replace(data, got[1]) if got else store.create(data)
        if not taken:
            raise _error(f"{output_dir}: another build took the lease at the same moment; not starting")
        dead_staging = (held or {}).get("staging")
    got = store.get()  # read back: on a store without preconditions the later writer wins
    if got is None or (_parse(got[0]) or {}).get("token") != mine["token"]:
        raise _error(f"{output_dir}: another build took the lease at the same moment; not starting")
    if isinstance(dead_staging, str) and dead_staging.startswith(".staging-") and "/" not in dead_staging \
            and dead_staging != mine["staging"]:
        _remove_prefix(_join(output_dir, dead_staging))  # the dead build's staged files
    try:
        yield mine
    finally:
        got = store.get()
        if got and (_parse(got[0]) or {}).get("token") == mine["token"]:
            store.delete_if(got[1] if store.scheme == "file" else None)


def _remove_prefix(prefix: str) -> None:
    with contextlib.suppress(Exception):
        if "://" in prefix:
            found = [m.path for m in FileSystems.match([_join(prefix, "**")])[0].metadata_list]
            if found:
                FileSystems.delete(found)
        elif os.path.isdir(prefix):
            FileSystems.delete([prefix])


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
