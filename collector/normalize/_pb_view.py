"""Wire-compatible views of the OTLP messages, with attributes as protobuf maps.

OTLP sends attributes as ``repeated KeyValue``; KeyValue is ``{string key = 1; AnyValue
value = 2}``, which is exactly how protobuf encodes an entry of ``map<string, bytes>``.
Declaring every ``attributes`` field as such a map (in a separate descriptor pool, so the
real classes are untouched) lets the upb parser hand over each span's attributes as one
map of key to encoded ``AnyValue``, without a Python message object per attribute and
per value. The decoder turns each distinct encoded value into a Python value once per
request, which is where most of the decode time went.

The views parse exactly what the real messages parse: the same fields, numbers and
types, the same UTF-8 checks on keys. An ``AnyValue`` is only parsed when it is read,
by the real ``AnyValue`` class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_KEY_VALUE = ".opentelemetry.proto.common.v1.KeyValue"
_FIELD = descriptor_pb2.FieldDescriptorProto


def _messages(messages: Any, prefix: str) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        name = f"{prefix}.{message.name}"
        yield name, message
        yield from _messages(message.nested_type, name)


def _with_attribute_maps(module: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    for name, message in list(_messages(proto.message_type, f".{proto.package}")):
        for field in message.field:
            if field.type_name != _KEY_VALUE or field.name != "attributes":
                continue
            entry = message.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            entry.field.add(
                name="key", number=1, label=_FIELD.LABEL_OPTIONAL, type=_FIELD.TYPE_STRING
            )
            entry.field.add(
                name="value", number=2, label=_FIELD.LABEL_OPTIONAL, type=_FIELD.TYPE_BYTES
            )
            field.type_name = f"{name}.AttributesEntry"
    return proto


def _view_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    # In dependency order; only files holding an ``attributes`` field change.
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        pool.Add(_with_attribute_maps(module))
    return pool


_POOL = _view_pool()

TraceRequestView: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest")
)
