"""Wire-compatible views of the OTLP messages, with attributes as encoded bytes.

OTLP sends attributes as ``repeated KeyValue``. An embedded message and a ``bytes`` field
are encoded the same way on the wire, so declaring every ``attributes`` field as
``repeated bytes`` (in a separate descriptor pool, so the real classes are untouched)
lets the upb parser hand over each span's attributes as a list of encoded ``KeyValue``s,
without a Python message object per attribute and per value. The decoder turns each
distinct encoded pair into a Python ``(key, value)`` once per request, which is where
most of the decode time went: most pairs repeat from span to span.

The views parse the same fields, numbers and types as the real messages. A ``KeyValue``
is parsed, with the real class and its UTF-8 check on the key, the first time the
decoder reads it. Attributes it never reads (those of a link dropped for its ids, or of
a scope with no span stored) are not checked.
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


def _messages(messages: Any) -> Iterator[descriptor_pb2.DescriptorProto]:
    for message in messages:
        yield message
        yield from _messages(message.nested_type)


def _with_attribute_bytes(module: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    for message in _messages(proto.message_type):
        for field in message.field:
            if field.type_name != _KEY_VALUE or field.name != "attributes":
                continue
            field.type = _FIELD.TYPE_BYTES
            field.ClearField("type_name")
    return proto


def _view_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    # In dependency order; only files holding an ``attributes`` field change.
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        pool.Add(_with_attribute_bytes(module))
    return pool


_POOL = _view_pool()

TraceRequestView: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest")
)
