"""Cache entries: one file per key under the cache folder, written atomically, checked on every read.

    <cache>/v1/<key[:2]>/<key>.entry

An entry is a sequence of frames (`kind` byte, 8-byte length, payload) between a header and a
trailer holding the SHA-256 of every byte before it:

    MAGIC  u32 len + header JSON {"format", "key", "dataset", "source"}
    "T"    a tokenized batch: u32 output shard, u32 n, n u64 orders, 3 x n u32 lengths, then the
           inputs bytes, targets bytes and provenance (UTF-8) of the n ShardItems
    "D"    a dead-letter record (JSON)
    "R"    the counts the stages reported (JSON [[key parts], count] pairs)
    "M"    progress numbers (JSON: examples rendered)
    "K"    the keys of other entries (JSON list): a task index (`stage.TaskGate`) lists its groups' entries
    "S"    what the survey found in a source file (JSON, `cache.survey`)
    "E"    + 32 bytes: the trailer

Frames keep the order the stages emitted them in. No pickle: an entry from a shared bucket is data,
never code.

Atomic: a writer streams into `<key>.entry.tmp-<uuid>` beside the final name and renames it only
after the trailer is written (local rename is atomic; object stores show an object only once its
upload completes), so a crashed writer leaves at most a temp file that no reader opens. A reader
takes the whole entry, checks magic, header key and checksum before it hands out anything; a
corrupt or truncated entry is a miss, with a warning, and is rewritten by that build.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
import uuid
from dataclasses import dataclass, field

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.records import ShardItem, ShardItems, new

MAGIC = b"FMXCACH1"
_FRAME = struct.Struct("<cQ")
_LOG = logging.getLogger(__name__)


def entry_path(cache_dir: str, key: str) -> str:
    return FileSystems.join(cache_dir.rstrip("/"), "v1", key[:2], key + ".entry")


@dataclass
class Entry:
    """What one source file's read, render and tokenize emitted, in order."""

    frames: list = field(default_factory=list)  # ("T", shard, ShardItems) | ("D", dict) | ("R", dict) | ("M", dict) | ("K", list) | ("S", dict)


def _encode_items(shard: int, items: ShardItems) -> bytes:
    n = len(items)
    orders = np.fromiter((it[0] for it in items), dtype="<u8", count=n)
    inputs = [it[1] for it in items]
    targets = [it[2] for it in items]
    prov = [it[3].encode("utf-8") for it in items]
    lengths = np.array([[len(b) for b in inputs], [len(b) for b in targets], [len(b) for b in prov]], dtype="<u4")
    return b"".join((struct.pack("<II", shard, n), orders.tobytes(), lengths.tobytes(),
                     b"".join(inputs), b"".join(targets), b"".join(prov)))


def _decode_items(payload: memoryview) -> tuple[int, ShardItems]:
    shard, n = struct.unpack_from("<II", payload, 0)
    pos = 8
    orders = np.frombuffer(payload, dtype="<u8", count=n, offset=pos).tolist()
    pos += 8 * n
    lengths = np.frombuffer(payload, dtype="<u4", count=3 * n, offset=pos).reshape(3, n)
    pos += 12 * n
    columns = []
    for side in range(3):
        ends = np.cumsum(lengths[side], dtype=np.int64).tolist()
        start, blob = 0, []
        for end in ends:
            blob.append(bytes(payload[pos + start:pos + end]))
            start = end
        columns.append(blob)
        pos += ends[-1] if ends else 0
    items = ShardItems()
    for order, inputs, targets, prov in zip(orders, columns[0], columns[1], columns[2]):
        items.append(new(ShardItem, (order, inputs, targets, prov.decode("utf-8"))))
    return shard, items


def _counts_to_json(counts: dict) -> bytes:
    return json.dumps(sorted([list(k), v] for k, v in counts.items())).encode("utf-8")


def _counts_from_json(data: bytes) -> dict:
    return {tuple(k): v for k, v in json.loads(data)}


class EntryWriter:
    """Streams one entry to a temp file beside its final name; `commit` renames it into place."""

    def __init__(self, cache_dir: str, key: str, header: dict):
        self.path = entry_path(cache_dir, key)
        self.temp = f"{self.path}.tmp-{uuid.uuid4().hex}"
        self.sha = hashlib.sha256()
        self.handle = FileSystems.create(self.temp, compression_type=CompressionTypes.UNCOMPRESSED)
        head = json.dumps({**header, "key": key}, sort_keys=True).encode("utf-8")
        self._write(MAGIC + struct.pack("<I", len(head)) + head)

    def _write(self, data: bytes) -> None:
        self.sha.update(data)
        self.handle.write(data)

    def _frame(self, kind: bytes, payload: bytes) -> None:
        self._write(_FRAME.pack(kind, len(payload)) + payload)

    def items(self, shard: int, items: ShardItems) -> None:
        self._frame(b"T", _encode_items(shard, items))

    def dead_letter(self, record: dict) -> None:
        self._frame(b"D", json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))

    def counts(self, counts: dict) -> None:
        self._frame(b"R", _counts_to_json(counts))

    def meta(self, meta: dict) -> None:
        self._frame(b"M", json.dumps(meta, sort_keys=True).encode("utf-8"))

    def survey(self, found: dict) -> None:
        self._frame(b"S", json.dumps(found, ensure_ascii=False).encode("utf-8"))  # fields keep their order

    def keys(self, keys: list[str]) -> None:
        self._frame(b"K", json.dumps(list(keys)).encode("utf-8"))

    def commit(self) -> None:
        digest = self.sha.digest()
        self.handle.write(b"E" + digest)
        self.handle.close()
        FileSystems.rename([self.temp], [self.path])

    def abort(self) -> None:
        for action in (self.handle.close, lambda: FileSystems.delete([self.temp])):
            try:
                action()
            except Exception:  # noqa: BLE001 - best effort: a temp file is never read
                pass


class SafeWriter:
    """An `EntryWriter` whose failures are warnings: an unwritable cache never fails a build, it
    only leaves that entry unstored (`cache_not_stored`). `cache_dir` None: writes nothing."""

    def __init__(self, cache_dir: str | None, key: str, header: dict, what: str):
        self.what, self.writer = what, None
        if cache_dir is not None:
            self._guard(lambda: setattr(self, "writer", EntryWriter(cache_dir, key, header)))

    def _guard(self, action) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            _LOG.warning("flanmix cache: cannot store the entry of %s: %s", self.what, exc)
            self.abort()

    def __getattr__(self, name):  # items, dead_letter, counts, meta, keys, survey
        def call(*args):
            if self.writer is not None:
                self._guard(lambda: getattr(self.writer, name)(*args))
        return call

    def abort(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()

    def commit(self) -> bool:
        """True when the entry is now stored."""
        if self.writer is None:
            return False
        self._guard(self.writer.commit)
        stored, self.writer = self.writer is not None, None
        return stored


def _read(path: str) -> bytes | None:
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read()
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError / IOError / FileNotFoundError for a missing object
        return None


class CorruptEntry(ValueError):
    pass


def _checked(data: bytes, key: str) -> tuple[memoryview, int]:
    """The body of the entry in `data` and where its frames start, once magic, checksum and key hold;
    else CorruptEntry saying what is wrong."""
    if len(data) < len(MAGIC) + 4 + 33 or not data.startswith(MAGIC):
        raise CorruptEntry("not a flanmix cache entry (bad magic or too short)")
    body, trailer = data[:-33], data[-33:]
    if trailer[:1] != b"E" or hashlib.sha256(body).digest() != trailer[1:]:
        raise CorruptEntry("checksum mismatch (truncated or altered)")
    view = memoryview(body)
    (head_len,) = struct.unpack_from("<I", view, len(MAGIC))
    pos = len(MAGIC) + 4
    header = json.loads(bytes(view[pos:pos + head_len]))
    if header.get("key") != key:
        raise CorruptEntry(f"holds key {header.get('key')}, not {key}")
    return view, pos + head_len


def parse(data: bytes, key: str) -> Entry:
    """The entry in `data`, or CorruptEntry saying what is wrong with it."""
    view, pos = _checked(data, key)
    entry = Entry()
    while pos < len(view):
        kind, length = _FRAME.unpack_from(view, pos)
        pos += _FRAME.size
        payload = view[pos:pos + length]
        if len(payload) != length:
            raise CorruptEntry("frame runs past the end")
        pos += length
        if kind == b"T":
            entry.frames.append(("T", *_decode_items(payload)))
        elif kind == b"D":
            entry.frames.append(("D", json.loads(bytes(payload))))
        elif kind == b"R":
            entry.frames.append(("R", _counts_from_json(bytes(payload))))
        elif kind == b"M":
            entry.frames.append(("M", json.loads(bytes(payload))))
        elif kind == b"K":
            entry.frames.append(("K", json.loads(bytes(payload))))
        elif kind == b"S":
            entry.frames.append(("S", json.loads(bytes(payload))))
        else:
            raise CorruptEntry(f"unknown frame kind {kind!r}")
    return entry


def intact(cache_dir: str, key: str) -> bool:
    """Whether an entry is stored under `key` and passes its checks (without decoding it, and without a
    warning: a task index checks the entries it lists before it replays any, `stage.TaskGateFn`)."""
    data = _read(entry_path(cache_dir, key))
    if data is None:
        return False
    try:
        _checked(data, key)
    except (CorruptEntry, ValueError, struct.error):
        return False
    return True


def load(cache_dir: str, key: str, what: str) -> tuple[Entry | None, bool]:
    """(entry, corrupt): (None, False) when no entry is stored; (None, True), with a warning naming
    `what` and the path, when one is stored but fails its checks."""
    path = entry_path(cache_dir, key)
    data = _read(path)
    if data is None:
        return None, False
    try:
        return parse(data, key), False
    except (CorruptEntry, ValueError, struct.error) as exc:
        _LOG.warning("flanmix cache: ignoring the entry of %s at %s: %s; rebuilding it", what, path, exc)
        return None, True
