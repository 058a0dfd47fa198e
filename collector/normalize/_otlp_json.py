"""OTLP JSON (the protobuf JSON mapping) walked directly into normalized records.

A direct walk instead of ``json_format.Parse``: that parser rejects the hex ids
OTLP JSON uses and is several times slower. Public names are re-exported by
:mod:`collector.normalize.otlp`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from collector.normalize.messaging import apply_messaging
from collector.normalize.records import (
    Attributes,
    LogRecord,
    RecordBatch,
    Rejection,
    SpanRecord,
    finalize_log_id,
)

SOURCE = "otlp"
_SAMPLE_CHARS = 500
_ZERO_TRACE_HEX = "0" * 32
_ZERO_SPAN_HEX = "0" * 16
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class DecodeError(ValueError):
    """A request body that cannot be decoded as a whole; the message says what is wrong."""


class _ItemError(ValueError):
    """One span or log record (or one resource) cannot be decoded."""


def _enum_names(pairs: list[tuple[str, int]], prefix: str) -> dict[str, int]:
    names = {}
    for name, number in pairs:
        names[name] = number
        names[name.removeprefix(prefix)] = number  # "SERVER" as well as "SPAN_KIND_SERVER"
    return names


_SPAN_KINDS = _enum_names(PbSpan.SpanKind.items(), "SPAN_KIND_")
_STATUS_CODES = _enum_names(PbStatus.StatusCode.items(), "STATUS_CODE_")
_SEVERITIES = _enum_names(SeverityNumber.items(), "SEVERITY_NUMBER_")

_STRING, _BOOL, _INT, _DOUBLE, _ARRAY, _KVLIST, _BYTES = range(7)
_ANY_KINDS = {
    "stringValue": _STRING,
    "string_value": _STRING,
    "boolValue": _BOOL,
    "bool_value": _BOOL,
    "intValue": _INT,
    "int_value": _INT,
    "doubleValue": _DOUBLE,
    "double_value": _DOUBLE,
    "arrayValue": _ARRAY,
    "array_value": _ARRAY,
    "kvlistValue": _KVLIST,
    "kvlist_value": _KVLIST,
    "bytesValue": _BYTES,
    "bytes_value": _BYTES,
}


def decode_traces_json(data: bytes | str) -> RecordBatch:
    """Decode an OTLP JSON ``ExportTraceServiceRequest`` body."""
    return _decode_traces(_load(data))


def decode_logs_json(data: bytes | str) -> RecordBatch:
    """Decode an OTLP JSON ``ExportLogsServiceRequest`` body."""
    return _decode_logs(_load(data))


def decode_otlp_json_object(obj: object) -> RecordBatch:
    """Decode one parsed OTLP JSON request, traces (``resourceSpans``) or logs (``resourceLogs``)."""
    if not isinstance(obj, dict):
        raise DecodeError(f"an OTLP JSON request must be an object, got {_type_name(obj)}")
    has_spans = "resourceSpans" in obj or "resource_spans" in obj
    has_logs = "resourceLogs" in obj or "resource_logs" in obj
    if not has_spans and not has_logs:
        keys = ", ".join(sorted(obj)[:5]) or "none"
        raise DecodeError(
            "not an OTLP traces (resourceSpans) or logs (resourceLogs) request; "
            f"top-level keys: {keys}"
        )
    batch = _decode_traces(obj) if has_spans else RecordBatch()
    if has_logs:
        batch.extend(_decode_logs(obj))
    return batch


def _load(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"invalid JSON: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    if not isinstance(obj, dict):
        raise DecodeError(f"request body must be a JSON object, got {_type_name(obj)}")
    return obj


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _get(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _objects(obj: dict[str, Any], camel: str, snake: str, path: str) -> list[dict[str, Any]]:
    items = _get(obj, camel, snake)
    if items is None:
        return []
    where = f"{path}.{camel}" if path else camel
    if type(items) is not list:
        raise DecodeError(f"{where} must be a list, got {_type_name(items)}")
    for index, item in enumerate(items):
        if type(item) is not dict:
            raise DecodeError(f"{where}[{index}] must be an object, got {_type_name(item)}")
    return items


def _sub_object(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise DecodeError(f"{path}.{key} must be an object, got {_type_name(value)}")
    return value


def _resource(container: dict[str, Any], path: str) -> tuple[Attributes, str]:
    resource = _sub_object(container, "resource", path)
    try:
        attributes = _attributes(resource.get("attributes"))
    except _ItemError as exc:
        raise DecodeError(f"{path}.resource: {exc}") from None
    service = attributes.get("service.name")
    return attributes, service if isinstance(service, str) else ""


def _scope(container: dict[str, Any], path: str) -> tuple[str, str, Attributes]:
    scope = _sub_object(container, "scope", path)
    try:
        return (
            _str(scope.get("name"), "name"),
            _str(scope.get("version"), "version"),
            _attributes(scope.get("attributes")),
        )
    except _ItemError as exc:
        raise DecodeError(f"{path}.scope: {exc}") from None


def _decode_traces(obj: dict[str, Any]) -> RecordBatch:
    batch = RecordBatch()
    for r, resource_spans in enumerate(_objects(obj, "resourceSpans", "resource_spans", "")):
        r_path = f"resourceSpans[{r}]"
        resource_attributes, service_name = _resource(resource_spans, r_path)
        resource_schema_url = _schema_url(resource_spans, r_path)
        for s, scope_spans in enumerate(
            _objects(resource_spans, "scopeSpans", "scope_spans", r_path)
        ):
            s_path = f"{r_path}.scopeSpans[{s}]"
            scope_name, scope_version, scope_attributes = _scope(scope_spans, s_path)
            scope_schema_url = _schema_url(scope_spans, s_path)
            for span in _objects(scope_spans, "spans", "spans", s_path):
                try:
                    record = _span(span)
                except _ItemError as exc:
                    batch.rejections.append(
                        _rejection(f"span {_name(span)!r} rejected: {exc}", span)
                    )
                    continue
                record.resource_attributes = resource_attributes
                record.service_name = service_name
                record.resource_schema_url = resource_schema_url
                record.scope_name = scope_name
                record.scope_version = scope_version
                record.scope_attributes = scope_attributes
                record.scope_schema_url = scope_schema_url
                batch.spans.append(apply_messaging(record))
    return batch


def _decode_logs(obj: dict[str, Any]) -> RecordBatch:
    batch = RecordBatch()
    for r, resource_logs in enumerate(_objects(obj, "resourceLogs", "resource_logs", "")):
        r_path = f"resourceLogs[{r}]"
        resource_attributes, service_name = _resource(resource_logs, r_path)
        _schema_url(resource_logs, r_path)
        for s, scope_logs in enumerate(_objects(resource_logs, "scopeLogs", "scope_logs", r_path)):
            s_path = f"{r_path}.scopeLogs[{s}]"
            scope_name, scope_version, _ = _scope(scope_logs, s_path)
            for log in _objects(scope_logs, "logRecords", "log_records", s_path):
                try:
                    record = _log(log)
                except _ItemError as exc:
                    batch.rejections.append(_rejection(f"log record rejected: {exc}", log))
                    continue
                record.resource_attributes = resource_attributes
                record.service_name = service_name
                record.scope_name = scope_name
                record.scope_version = scope_version
                batch.logs.append(finalize_log_id(record))
    return batch


def _schema_url(container: dict[str, Any], path: str) -> str:
    try:
        return _str(_get(container, "schemaUrl", "schema_url"), "schemaUrl")
    except _ItemError as exc:
        raise DecodeError(f"{path}: {exc}") from None


def _name(item: dict[str, Any]) -> str:
    name = item.get("name")
    return name if isinstance(name, str) else ""


def _rejection(reason: str, item: Any) -> Rejection:
    sample = json.dumps(item, default=str, ensure_ascii=False)[:_SAMPLE_CHARS]
    return Rejection(source=SOURCE, reason=reason, sample=sample)


def _span(span: dict[str, Any]) -> SpanRecord:
    trace_id = _id(_get(span, "traceId", "trace_id"), 16, "trace_id")
    if trace_id == _ZERO_TRACE_HEX:
        raise _ItemError("trace_id must not be all zeros")
    span_id = _id(_get(span, "spanId", "span_id"), 8, "span_id")
    if span_id == _ZERO_SPAN_HEX:
        raise _ItemError("span_id must not be all zeros")
    parent_span_id = _id(_get(span, "parentSpanId", "parent_span_id"), 8, "parent_span_id", True)
    status = span.get("status") or {}
    if type(status) is not dict:
        raise _ItemError(f"status must be an object, got {_type_name(status)}")
    record = SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        name=_str(span.get("name"), "name"),
        start_ns=_int(_get(span, "startTimeUnixNano", "start_time_unix_nano"), "startTimeUnixNano"),
        end_ns=_int(_get(span, "endTimeUnixNano", "end_time_unix_nano"), "endTimeUnixNano"),
        parent_span_id="" if parent_span_id == _ZERO_SPAN_HEX else parent_span_id,
        kind=_enum(span.get("kind"), _SPAN_KINDS, "kind"),
        status_code=_enum(status.get("code"), _STATUS_CODES, "status.code"),
        status_message=_str(status.get("message"), "status.message"),
        attributes=_attributes(span.get("attributes")),
        trace_state=_str(_get(span, "traceState", "trace_state"), "traceState"),
        flags=_int(span.get("flags"), "flags"),
        dropped_attributes_count=_dropped(span),
        dropped_events_count=_int(
            _get(span, "droppedEventsCount", "dropped_events_count"), "droppedEventsCount"
        ),
        dropped_links_count=_int(
            _get(span, "droppedLinksCount", "dropped_links_count"), "droppedLinksCount"
        ),
    )
    events = span.get("events")
    if events:
        record.events = [_event(event) for event in _items(events, "events")]
    links = span.get("links")
    if links:
        record.links = []
        for link in _items(links, "links"):
            try:
                record.links.append(_link(link))
            except _ItemError:
                # A link that points nowhere is counted as dropped rather than failing its span.
                record.dropped_links_count += 1
    return record


def _log(log: dict[str, Any]) -> LogRecord:
    trace_id = _id(_get(log, "traceId", "trace_id"), 16, "trace_id", True)
    span_id = _id(_get(log, "spanId", "span_id"), 8, "span_id", True)
    return LogRecord(
        time_ns=_int(_get(log, "timeUnixNano", "time_unix_nano"), "timeUnixNano"),
        observed_time_ns=_int(
            _get(log, "observedTimeUnixNano", "observed_time_unix_nano"), "observedTimeUnixNano"
        ),
        severity_number=_enum(
            _get(log, "severityNumber", "severity_number"), _SEVERITIES, "severityNumber"
        ),
        severity_text=_str(_get(log, "severityText", "severity_text"), "severityText"),
        body=_any(log.get("body")),
        attributes=_attributes(log.get("attributes")),
        trace_id="" if trace_id == _ZERO_TRACE_HEX else trace_id,
        span_id="" if span_id == _ZERO_SPAN_HEX else span_id,
        flags=_int(log.get("flags"), "flags"),
        event_name=_str(_get(log, "eventName", "event_name"), "eventName"),
        dropped_attributes_count=_dropped(log),
    )


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": _str(event.get("name"), "event name"),
        "time_ns": _int(_get(event, "timeUnixNano", "time_unix_nano"), "event timeUnixNano"),
        "attributes": _attributes(event.get("attributes")),
        "dropped_attributes_count": _dropped(event),
    }


def _link(link: dict[str, Any]) -> dict[str, Any]:
    trace_id = _id(_get(link, "traceId", "trace_id"), 16, "link trace_id")
    span_id = _id(_get(link, "spanId", "span_id"), 8, "link span_id")
    if trace_id == _ZERO_TRACE_HEX or span_id == _ZERO_SPAN_HEX:
        raise _ItemError("link ids must not be all zeros")
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "trace_state": _str(_get(link, "traceState", "trace_state"), "link traceState"),
        "flags": _int(link.get("flags"), "link flags"),
        "attributes": _attributes(link.get("attributes")),
        "dropped_attributes_count": _dropped(link),
    }


def _items(value: Any, field: str) -> list[dict[str, Any]]:
    if type(value) is not list or any(type(item) is not dict for item in value):
        raise _ItemError(f"{field} must be a list of objects")
    return value


def _dropped(obj: dict[str, Any]) -> int:
    return _int(
        _get(obj, "droppedAttributesCount", "dropped_attributes_count"), "droppedAttributesCount"
    )


def _id(value: Any, size: int, field: str, optional: bool = False) -> str:
    """Hex (any case) or base64 id as lowercase hex; "" when absent and optional."""
    if value is None or value == "":
        if optional:
            return ""
        raise _ItemError(f"{field} must be {size} bytes, got 0")
    if type(value) is not str:
        raise _ItemError(f"{field} must be a hex string, got {_type_name(value)}")
    if len(value) == 2 * size or (len(value) % 2 == 0 and _HEX_DIGITS.issuperset(value)):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise _ItemError(f"{field} {value!r} is not valid hex") from None
    else:
        raw = _b64decode(value, f"{field} {value!r} is neither {2 * size} hex digits nor base64")
    if len(raw) != size:
        raise _ItemError(f"{field} must be {size} bytes, got {len(raw)}")
    return raw.hex()


def _b64decode(value: str, problem: str) -> bytes:
    # Standard or URL-safe alphabet, padding optional: exporters differ on both.
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _ItemError(problem) from None


def _str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value
    raise _ItemError(f"{field} must be a string, got {_type_name(value)}")


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int(value: Any, field: str) -> int:
    # Protobuf JSON writes 64-bit integers as strings; accept numbers as well.
    kind = type(value)
    if kind is int:
        return value  # type: ignore[no-any-return]
    if value is None:
        return 0
    if kind is str:
        try:
            return int(value)
        except ValueError:
            pass
    elif kind is float and value.is_integer():
        return int(value)
    raise _ItemError(f"{field} must be an integer, got {value!r}")


def _enum(value: Any, names: dict[str, int], field: str) -> int:
    if type(value) is str and value in names:
        return names[value]
    return _int(value, field)


def _double(value: Any) -> float:
    # Also covers the "NaN", "Infinity" and "-Infinity" strings of protobuf JSON.
    if type(value) in (int, float, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _ItemError(f"doubleValue must be a number, got {value!r}")


def _attributes(items: Any) -> Attributes:
    if not items:
        return {}
    if type(items) is not list:
        raise _ItemError(f"attributes must be a list, got {_type_name(items)}")
    attributes: Attributes = {}
    for item in items:
        if type(item) is not dict:
            raise _ItemError(f"attribute must be an object, got {_type_name(item)}")
        key = item.get("key")
        if type(key) is not str:
            raise _ItemError(f"attribute key must be a string, got {_type_name(key)}")
        value = item.get("value")
        # String values are most attributes; skip the general walk for them.
        if type(value) is dict and len(value) == 1:
            text = value.get("stringValue")
            if type(text) is str:
                attributes[key] = text
                continue
        try:
            attributes[key] = _any(value)
        except _ItemError as exc:
            raise _ItemError(f"attribute {key!r}: {exc}") from None
    return attributes


def _any(value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not dict:
        raise _ItemError(f"value must be an AnyValue object, got {_type_name(value)}")
    for key, inner in value.items():
        kind = _ANY_KINDS.get(key)
        if kind is None or inner is None:
            continue  # unknown field, or an explicit null meaning unset
        if kind == _STRING:
            return _str(inner, "stringValue")
        if kind == _INT:
            number = _int(inner, "intValue")
            if not _INT64_MIN <= number <= _INT64_MAX:
                raise _ItemError(f"intValue must fit in 64 bits, got {inner!r}")
            return number
        if kind == _BOOL:
            if type(inner) is bool:
                return inner
            raise _ItemError(f"boolValue must be true or false, got {inner!r}")
        if kind == _DOUBLE:
            return _double(inner)
        if kind == _BYTES:
            if type(inner) is not str:
                raise _ItemError(f"bytesValue must be a base64 string, got {_type_name(inner)}")
            raw = _b64decode(inner, f"bytesValue {inner[:40]!r} is not base64")
            return {"bytes": base64.b64encode(raw).decode("ascii")}
        if type(inner) is not dict:
            raise _ItemError(f"{key} must be an object, got {_type_name(inner)}")
        values = inner.get("values")
        if values is not None and type(values) is not list:
            raise _ItemError(f"{key}.values must be a list, got {_type_name(values)}")
        if kind == _ARRAY:
            return [_any(item) for item in values or ()]
        return _attributes(values)
    return None
