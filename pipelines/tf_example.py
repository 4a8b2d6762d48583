"""`tf.train.Example` protobufs without importing TensorFlow (which costs seconds per process).

The message classes are built at first use from a descriptor of the public Example/Feature schema
(tensorflow/core/example/{example,feature}.proto: package `tensorflow`) in a private descriptor
pool, so they never clash with TensorFlow's own classes when both are loaded. The bytes are the
standard wire format: `tf.io.parse_single_example` and `tf.data` read them (tests check this).
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


def parse_example(data: bytes) -> dict[str, list]:
    """Decode our own Examples back to python lists (for tests and tools without TensorFlow)."""
    example = example_class()()
    example.ParseFromString(data)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, kind).value) if kind else []
    return out
