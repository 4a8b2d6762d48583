"""`tf.train.Example` protobufs without importing TensorFlow (which costs seconds per process).

The message classes are built at first use from a descriptor of the public Example/Feature schema
(tensorflow/core/example/{example,feature}.proto: package `tensorflow`) in a private descriptor
pool, so they never clash with TensorFlow's own classes when both are loaded. The bytes are the
standard wire format: `tf.io.parse_single_example` and `tf.data` read them (tests check this).

`serialize_examples` writes the same bytes for a whole batch without building messages: an Example
of int64 lists is a few length-prefixed headers around packed varints, and numpy encodes the
varints of every row at once. It is the
build's writer because per-value conversion through the protobuf runtime was the largest single
cost of writing a shard (see benchmarks/throughput.py); `serialize_example` stays the reference,
and a test checks the two agree byte for byte, negative and 64-bit values included.
"""
from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="flanmix/tf_example.proto", package="tensorflow", syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str]], oneof: str | None = None):
        msg = fd.message_type.add(name=name)
        if oneof:
            msg.oneof_decl.add(name=oneof)
        for fname, number, ftype, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if oneof:
                f.oneof_index = 0
        return msg

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, _F.TYPE_BYTES, rep, "")])
    message("FloatList", [("value", 1, _F.TYPE_FLOAT, rep, "")])
    message("Int64List", [("value", 1, _F.TYPE_INT64, rep, "")])
    message("Feature", [
        ("bytes_list", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.BytesList"),
        ("float_list", 2, _F.TYPE_MESSAGE, opt, ".tensorflow.FloatList"),
        ("int64_list", 3, _F.TYPE_MESSAGE, opt, ".tensorflow.Int64List"),
    ], oneof="kind")
    features = message("Features", [("feature", 1, _F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature")
    message("Example", [("features", 1, _F.TYPE_MESSAGE, opt, ".tensorflow.Features")])
    return fd


@functools.lru_cache(maxsize=1)
def example_class():
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def serialize_example(int_features: Mapping[str, Sequence[int] | np.ndarray], bytes_features: Mapping[str, Sequence[bytes]] = {}) -> bytes:
    """Serialize one Example deterministically (map keys sorted on the wire)."""
    example = example_class()()
    feature_map = example.features.feature
    for name, values in int_features.items():
        feature_map[name].int64_list.value.extend(np.asarray(values, np.int64).tolist())
    for name, values in bytes_features.items():
        feature_map[name].bytes_list.value.extend(values)
    return example.SerializeToString(deterministic=True)


# --- the batch writer: the wire format, vectorized over rows ----------------------------------------

def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes of each uint64 value's varint (1-10)."""
    lengths = np.ones(values.shape, np.int64)
    top = int(values.max()) if values.size else 0
    for k in range(1, 10):
        if top < 1 << (7 * k):
            break
        lengths += values >= np.uint64(1 << (7 * k))
    return lengths


def encode_varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the varints of `values` back to back as uint8, each value's byte count). Negative int64
    values take 10 bytes, as protobuf writes them.

    Token ids, positions and segment ids are small and non-negative: they take the narrow path, one
    uint8 column per varint byte in 32-bit arithmetic, and a mask keeps each value's bytes."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    if values.min() >= 0 and values.max() < 1 << 28:
        top = int(values.max())
        width = 1 + sum(top >= 1 << (7 * k) for k in (1, 2, 3))
        narrow = values.astype(np.uint16 if width <= 2 else np.uint32)  # less memory to stream through
        if width == 1:
            return narrow.astype(np.uint8), np.ones(narrow.size, np.uint8)
        # more[k]: the value has a byte k (k >= 1), i.e. it is at least 2**(7k)
        more = [None] + [narrow >= (1 << (7 * k)) for k in range(1, width)]
        columns = np.empty((narrow.size, width), np.uint8)
        present = np.empty((narrow.size, width), np.bool_)
        present[:, 0] = True
        lengths = np.ones(narrow.size, np.uint8)
        for k in range(width):
            byte = (narrow >> (7 * k)).astype(np.uint8) & 0x7F
            if k + 1 < width:  # continuation bit: another byte follows
                byte |= more[k + 1].view(np.uint8) << 7
            columns[:, k] = byte
            if k:
                present[:, k] = more[k]
                lengths += more[k]
        return columns[present], lengths
    wide = values.astype(np.int64, copy=False).view(np.uint64)
    lengths = _varint_lengths(wide)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    data = np.empty(int(ends[-1]), np.uint8)
    for k in range(int(lengths.max())):
        has = lengths > k
        data[starts[has] + k] = (((wide[has] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
                                 | ((lengths[has] > k + 1).astype(np.uint8) << 7))
    return data, lengths


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _map_key_order(a: str, b: str) -> int:
    """The order protobuf's upb runtime gives map keys in deterministic output (the runtime of
    `serialize_example`, and of TensorFlow's Python protos): bytewise, except that a key which is a
    prefix of another comes after it ("inputs_positions" before "inputs")."""
    x, y = a.encode("utf-8"), b.encode("utf-8")
    n = min(len(x), len(y))
    if x[:n] != y[:n]:
        return -1 if x[:n] < y[:n] else 1
    return len(y) - len(x)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def serialize_examples(int_features: Mapping[str, Sequence[np.ndarray] | np.ndarray],
                       bytes_features: Mapping[str, Sequence[Sequence[bytes]]] = {}) -> list[bytes]:
    """`serialize_example` for a batch: feature name -> one value list per example, or a
    (examples, length) matrix. Same bytes as `serialize_example` on each example."""
    counts = {len(v) for v in (*int_features.values(), *bytes_features.values())}
    if len(counts) > 1:
        raise ValueError(f"features disagree on the number of examples: {sorted(counts)}")
    n = counts.pop() if counts else 0
    encoded = {}
    for name, rows in int_features.items():
        if isinstance(rows, np.ndarray) and rows.ndim == 2:
            flat, sizes = rows.ravel(), np.full(n, rows.shape[1], np.int64)
        else:
            sizes = np.fromiter((len(r) for r in rows), np.int64, n)
            flat = np.concatenate([np.asarray(r) for r in rows]) if n else np.zeros(0, np.int64)
        if flat.dtype.kind not in "iu":
            flat = flat.astype(np.int64)
        data, lengths = encode_varints(flat)
        if isinstance(rows, np.ndarray) and rows.ndim == 2:
            row_bytes = lengths.reshape(rows.shape).sum(axis=1, dtype=np.int64)
        else:
            value_ends = np.zeros(len(lengths) + 1, np.int64)
            np.cumsum(lengths, dtype=np.int64, out=value_ends[1:])
            row_ends = np.zeros(n + 1, np.int64)
            np.cumsum(sizes, out=row_ends[1:])
            row_bytes = np.diff(value_ends[row_ends])
        byte_ends = np.zeros(n + 1, np.int64)
        np.cumsum(row_bytes, out=byte_ends[1:])
        encoded[name] = (data.tobytes(), byte_ends.tolist())
    keys = sorted([*int_features, *bytes_features], key=functools.cmp_to_key(_map_key_order))
    headers = {k: _field(b"\x0a", k.encode("utf-8")) + b"\x12" for k in keys}
    out = []
    for i in range(n):
        parts = []
        for key in keys:
            if key in encoded:
                data, ends = encoded[key]
                packed = data[ends[i]:ends[i + 1]]
                feature = _field(b"\x1a", _field(b"\x0a", packed) if packed else b"")
            else:
                feature = _field(b"\x0a", b"".join([_field(b"\x0a", v) for v in bytes_features[key][i]]))
            parts.append(_field(b"\x0a", headers[key] + _varint(len(feature)) + feature))
        out.append(_field(b"\x0a", b"".join(parts)))
    return out


def parse_example(data: bytes) -> dict[str, list]:
    """Decode our own Examples back to python lists (for tests and tools without TensorFlow)."""
    example = example_class()()
    example.ParseFromString(data)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, kind).value) if kind else []
    return out
