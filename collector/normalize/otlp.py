"""OTLP traces and logs, protobuf or JSON, decoded into normalized records.

Pure functions: no I/O, no clock, no environment. A request body that cannot be
read as a whole raises :class:`DecodeError`; a single span or log record that
cannot be stored becomes a :class:`Rejection` in the returned batch and the rest
of the request is kept.

The JSON side follows the OTLP JSON encoding (hex ids, lowerCamelCase keys,
64-bit integers as strings, enums as integers) and is lenient where exporters
differ from it: base64 ids, snake_case keys, enum names and numeric strings are
accepted, unknown fields are ignored.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from collector.normalize._otlp_json import (
    DecodeError,
    decode_logs_json,
    decode_otlp_json_object,
    decode_traces_json,
)
from collector.normalize._pb_view import TraceRequestView
from collector.normalize.messaging import messaging_columns
from collector.normalize.records import (
    SPAN_FIELDS,
    Attributes,
    LogRecord,
    RecordBatch,
    Rejection,
    SpanColumns,
    finalize_log_id,
)

__all__ = [
    "DecodeError",
    "decode_logs_json",
    "decode_logs_protobuf",
    "decode_logs_request",
    "decode_otlp_json_object",
    "decode_trace_columns",
    "decode_trace_request",
    "decode_traces_json",
    "decode_traces_protobuf",
]

SOURCE = "otlp"
_SAMPLE_CHARS = 500
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_SCALAR_FIELDS = frozenset(("string_value", "bool_value", "int_value", "double_value"))
_which_value = AnyValue.WhichOneof


def decode_traces_protobuf(data: bytes) -> RecordBatch:
    """Decode a protobuf ``ExportTraceServiceRequest`` body into records."""
    columns = decode_trace_columns(data)
    return RecordBatch(spans=columns.records(), rejections=columns.rejections)


def decode_trace_columns(data: bytes) -> SpanColumns:
    """Decode a protobuf ``ExportTraceServiceRequest`` body into span columns.

    The ingest hot path: no object is built per attribute, each distinct attribute (key
    and value) is decoded once per request, and each span is one tuple until the columns
    are made from all of them at once.
    """
    request = TraceRequestView()
    try:
        request.ParseFromString(data)
    except _ProtobufDecodeError as exc:
        raise DecodeError(_protobuf_error("ExportTraceServiceRequest", data)) from exc
    out = SpanColumns()
    c = out.columns
    memo = _Pairs()
    # One tuple per span, in _ROW_FIELDS order, turned into columns at the end: a tuple
    # display and one append cost less than an append per field.
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    per_scope = [c[name] for name in _PER_SCOPE_FIELDS]
    for resource_spans in request.resource_spans:
        resource_attributes = _map_attributes(resource_spans.resource.attributes, memo)
        service = resource_attributes.get("service.name")
        service_name = service if isinstance(service, str) else ""
        resource_schema_url = resource_spans.schema_url
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            before = len(rows)
            for span in scope_spans.spans:
                trace_id = span.trace_id
                span_id = span.span_id
                parent_span_id = span.parent_span_id
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or trace_id == _ZERO_TRACE_ID
                    or span_id == _ZERO_SPAN_ID
                    or (parent_span_id and len(parent_span_id) != 8)
                ):
                    problem = _span_id_problem(trace_id, span_id, parent_span_id)
                    out.rejections.append(_reject_pb_span(span, problem))
                    continue
                attributes = _map_attributes(span.attributes, memo)
                status = span.status
                span_events = span.events
                span_links, dropped = _pb_links(span.links, memo) if span.links else ([], 0)
                add(
                    (
                        trace_id.hex(),
                        span_id.hex(),
                        span.name,
                        span.start_time_unix_nano,
                        span.end_time_unix_nano,
                        ""
                        if not parent_span_id or parent_span_id == _ZERO_SPAN_ID
                        else parent_span_id.hex(),
                        span.kind,
                        status.code,
                        status.message,
                        attributes,
                        [
                            {
                                "name": event.name,
                                "time_ns": event.time_unix_nano,
                                "attributes": _map_attributes(event.attributes, memo),
                                "dropped_attributes_count": event.dropped_attributes_count,
                            }
                            for event in span_events
                        ]
                        if span_events
                        else [],
                        span_links,
                        span.trace_state,
                        span.flags,
                        span.dropped_attributes_count,
                        span.dropped_events_count,
                        span.dropped_links_count + dropped,
                        *messaging_columns(attributes),
                    )
                )
            count = len(rows) - before
            if count:
                scope_values = (
                    resource_attributes,
                    service_name,
                    scope.name,
                    scope.version,
                    _map_attributes(scope.attributes, memo),
                    resource_schema_url,
                    scope_spans.schema_url,
                )
                for column, value in zip(per_scope, scope_values, strict=True):
                    # One resource's (and scope's) attribute dict is shared by its spans.
                    column.extend([value] * count)
    if rows:
        for name, values in zip(_ROW_FIELDS, zip(*rows, strict=True), strict=True):
            c[name] = list(values)
    return out


_PER_SCOPE_FIELDS = (
    "resource_attributes",
    "service_name",
    "scope_name",
    "scope_version",
    "scope_attributes",
    "resource_schema_url",
    "scope_schema_url",
)
# A span's own fields, which the decoder puts in each span's tuple: the record's fields in
# their order, less those every span of a scope shares.
_ROW_FIELDS = tuple(f for f in SPAN_FIELDS if f not in _PER_SCOPE_FIELDS)


def decode_logs_protobuf(data: bytes) -> RecordBatch:
    """Decode a protobuf ``ExportLogsServiceRequest`` body."""
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(data)
    except _ProtobufDecodeError as exc:
        raise DecodeError(_protobuf_error("ExportLogsServiceRequest", data)) from exc
    return decode_logs_request(request)


def _protobuf_error(message_name: str, data: bytes) -> str:
    return (
        f"invalid protobuf: {len(data)} bytes do not parse as {message_name} "
        "(truncated, corrupt, not protobuf, or a string field is not UTF-8)"
    )


def decode_trace_request(msg: ExportTraceServiceRequest) -> RecordBatch:
    """Decode an already-parsed traces request into records."""
    return decode_traces_protobuf(msg.SerializeToString())


def decode_logs_request(msg: ExportLogsServiceRequest) -> RecordBatch:
    """Decode an already-parsed logs request, as the gRPC receiver gets it."""
    batch = RecordBatch()
    logs = batch.logs
    for resource_logs in msg.resource_logs:
        resource_attributes = _pb_attributes(resource_logs.resource.attributes)
        service = resource_attributes.get("service.name")
        service_name = service if isinstance(service, str) else ""
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_name = scope.name
            scope_version = scope.version
            for log in scope_logs.log_records:
                trace_id = log.trace_id
                span_id = log.span_id
                problem = _log_id_problem(trace_id, span_id)
                if problem:
                    batch.rejections.append(_reject_pb_log(log, problem))
                    continue
                record = LogRecord(
                    time_ns=log.time_unix_nano,
                    observed_time_ns=log.observed_time_unix_nano,
                    severity_number=log.severity_number,
                    severity_text=log.severity_text,
                    body=_pb_any(log.body) if log.HasField("body") else None,
                    attributes=_pb_attributes(log.attributes),
                    resource_attributes=resource_attributes,
                    service_name=service_name,
                    scope_name=scope_name,
                    scope_version=scope_version,
                    trace_id="" if trace_id == _ZERO_TRACE_ID else trace_id.hex(),
                    span_id="" if span_id == _ZERO_SPAN_ID else span_id.hex(),
                    flags=log.flags,
                    event_name=log.event_name,
                    dropped_attributes_count=log.dropped_attributes_count,
                )
                logs.append(finalize_log_id(record))
    return batch


def _span_id_problem(trace_id: bytes, span_id: bytes, parent_span_id: bytes) -> str:
    if len(trace_id) != 16:
        return f"trace_id must be 16 bytes, got {len(trace_id)}"
    if trace_id == _ZERO_TRACE_ID:
        return "trace_id must not be all zeros"
    if len(span_id) != 8:
        return f"span_id must be 8 bytes, got {len(span_id)}"
    if span_id == _ZERO_SPAN_ID:
        return "span_id must not be all zeros"
    if parent_span_id and len(parent_span_id) != 8:
        return f"parent_span_id must be 8 bytes or empty, got {len(parent_span_id)}"
    return ""


def _log_id_problem(trace_id: bytes, span_id: bytes) -> str:
    # Ids are optional on log records; only a present id of the wrong size is wrong.
    if trace_id and len(trace_id) != 16:
        return f"trace_id must be 16 bytes or empty, got {len(trace_id)}"
    if span_id and len(span_id) != 8:
        return f"span_id must be 8 bytes or empty, got {len(span_id)}"
    return ""


def _reject_pb_span(span: Any, problem: str) -> Rejection:
    # The sample is shown by the real Span class, whose text form people know. It parses
    # the span's attributes, which the view has not read: one that is malformed fails the
    # request, as it would with the real classes.
    try:
        readable = PbSpan.FromString(span.SerializeToString())
    except _ProtobufDecodeError as exc:
        raise DecodeError(
            f"invalid protobuf: span {span.name!r} ({problem}) does not parse as Span "
            "(an attribute is truncated, or its key is not UTF-8)"
        ) from exc
    return Rejection(
        source=SOURCE,
        reason=f"span {span.name!r} rejected: {problem}",
        sample=str(readable)[:_SAMPLE_CHARS],
    )


def _reject_pb_log(log: PbLogRecord, problem: str) -> Rejection:
    return Rejection(
        source=SOURCE, reason=f"log record rejected: {problem}", sample=str(log)[:_SAMPLE_CHARS]
    )


def _pb_links(span_links: Any, memo: _Pairs) -> tuple[list[dict[str, Any]], int]:
    """A span's links, and how many were dropped because they point nowhere."""
    links = []
    dropped = 0
    for link in span_links:
        trace_id = link.trace_id
        span_id = link.span_id
        # A link that points nowhere is counted as dropped rather than failing its span.
        if (
            len(trace_id) != 16
            or len(span_id) != 8
            or trace_id == _ZERO_TRACE_ID
            or span_id == _ZERO_SPAN_ID
        ):
            dropped += 1
            continue
        links.append(
            {
                "trace_id": trace_id.hex(),
                "span_id": span_id.hex(),
                "trace_state": link.trace_state,
                "flags": link.flags,
                "attributes": _map_attributes(link.attributes, memo),
                "dropped_attributes_count": link.dropped_attributes_count,
            }
        )
    return links, dropped


class _Pairs(dict[bytes, tuple[str, Any]]):
    """A request's attributes seen so far: encoded ``KeyValue`` -> ``(key, value)``.

    A pair is decoded the first time the request carries it; only pairs with immutable
    values are kept, so spans never share a list or a map.
    """

    def __missing__(self, encoded: bytes) -> tuple[str, Any]:
        try:
            kv = KeyValue.FromString(encoded)
        except _ProtobufDecodeError as exc:
            raise DecodeError(
                f"invalid protobuf: an attribute of {len(encoded)} bytes does not parse as "
                "KeyValue (truncated, or its key is not UTF-8)"
            ) from exc
        value = kv.value
        field = _which_value(value, "value")
        if field in _SCALAR_FIELDS:
            pair = self[encoded] = (kv.key, getattr(value, field))
            return pair
        return kv.key, _pb_any_nested(value, field)


def _map_attributes(entries: Any, memo: _Pairs) -> Attributes:
    """Attributes from a view's ``repeated bytes`` of encoded ``KeyValue``s."""
    return dict(map(memo.__getitem__, entries))


def _pb_attributes(key_values: Any) -> Attributes:
    # The hot loop of ingest: measured faster than per-attribute helper calls or
    # HasField chains, because scalar values need just one WhichOneof and getattr.
    attributes: Attributes = {kv.key: kv.value for kv in key_values}
    for key, value in attributes.items():
        field = _which_value(value, "value")
        if field in _SCALAR_FIELDS:
            attributes[key] = getattr(value, field)
        else:
            attributes[key] = _pb_any_nested(value, field)
    return attributes


def _pb_any(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    if field in _SCALAR_FIELDS:
        return getattr(value, field)
    return _pb_any_nested(value, field)


def _pb_any_nested(value: AnyValue, field: str | None) -> Any:
    if field == "array_value":
        return [_pb_any(item) for item in value.array_value.values]
    if field == "kvlist_value":
        return _pb_kvlist(value.kvlist_value.values)
    if field == "bytes_value":
        return {"bytes": _b64encode(value.bytes_value)}
    # Unset, or string_value_strindex which only means something inside profiles.
    return None


def _pb_kvlist(key_values: list[KeyValue]) -> Attributes:
    return {kv.key: _pb_any(kv.value) for kv in key_values}


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
