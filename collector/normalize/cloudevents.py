"""CloudEvents and plain broker messages → :class:`EventRecord` (pure: no I/O, no clock).

Covers the CloudEvents 1.0 HTTP binding (binary, structured, batch), the AMQP binding
(``cloudEvents:``/``cloudEvents_`` application properties, plus the ``ce-`` headers the
RabbitMQ SDK binding writes), the NATS binding (``ce-`` headers or structured) and the
Kafka binding (``ce_`` headers or structured). Messages that are not CloudEvents but
carry a JSON body are taken as plain events: their type comes from the routing key,
subject or topic, or from a configured JSON field.

Attributes are validated here rather than by constructing the SDK's ``CloudEvent``:
that constructor silently invents an ``id`` and a ``time`` when they are missing,
which would hide exactly the errors a producer needs to hear about.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import unquote

from cloudevents.core.bindings.amqp import CE_PREFIX_COLON, CE_PREFIX_UNDERSCORE
from cloudevents.core.bindings.http import CE_PREFIX as HTTP_CE_PREFIX
from cloudevents.core.bindings.kafka import CE_PREFIX as KAFKA_CE_PREFIX
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES

from collector.normalize.records import EventRecord, Rejection, finalize_event_key

STRUCTURED: Final = JSONFormat.CONTENT_TYPE  # application/cloudevents+json
BATCH: Final = "application/cloudevents-batch+json"
SPECVERSION: Final = "1.0"
SAMPLE_CHARS: Final = 500
# Event times the store can hold: nanoseconds since the epoch in a signed 64-bit integer.
_MIN_TIME_NS: Final = -(2**63)
_MAX_TIME_NS: Final = 2**63 - 1

_REQUIRED = frozenset(REQUIRED_ATTRIBUTES)
_CORE = _REQUIRED | frozenset(OPTIONAL_ATTRIBUTES)
_JSON_TYPE = JSONFormat.JSON_CONTENT_TYPE_PATTERN
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\d*([Zz]|[+-]\d{2}:\d{2})$"
)
# Request headers never worth keeping with an event (secrets and hop-by-hop noise).
_DROP_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "content-length",
        "host",
        "connection",
        "accept",
        "accept-encoding",
        "user-agent",
        "transfer-encoding",
        "content-encoding",
    }
)


class EventDecodeError(ValueError):
    """A body that cannot be decoded as a whole (not JSON, not a list where one is needed)."""


class _Invalid(ValueError):
    """One event is unusable; the message says why."""


@dataclass(slots=True)
class Decoded:
    """Events and rejections of one body or message, each rejection with its position."""

    events: list[EventRecord] = field(default_factory=list)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)


@dataclass(slots=True)
class Envelope:
    """Where a message came from: the transport facts every event keeps."""

    transport: str  # http | amqp | nats | kafka | file
    received_ns: int = 0
    label: str = ""  # rejection source, e.g. "cloudevents-http", "amqp:orders"
    destination: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PlainRule:
    """How a tap reads a message that is not a CloudEvent."""

    source: str  # stable per tap, so source + id dedups redeliveries
    type_hint: str = ""  # routing key, subject or topic
    type_field: str = ""  # dotted JSON path, e.g. "data.eventType"; empty: use the hint
    time_ns: int = 0  # broker timestamp when the message carries one


# -- shared helpers ------------------------------------------------------------------------


def sample_of(value: bytes | str | Any, limit: int = SAMPLE_CHARS) -> str:
    """A truncated printable copy of offending input for the rejections table."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: limit * 4]).decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except ValueError:
            text = repr(value)
    return text[:limit]


def parse_time(value: Any) -> int:
    """RFC 3339 timestamp → integer nanoseconds, keeping sub-microsecond digits."""
    nanos = _time_ns(value)
    if not _MIN_TIME_NS <= nanos <= _MAX_TIME_NS:
        raise _Invalid(
            f"attribute 'time' is out of range: {str(value)[:60]!r} "
            "(times from 1677-09-22 to 2262-04-11 can be stored)"
        )
    return nanos


def _time_ns(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1_000_000  # AMQP timestamp: milliseconds since the epoch
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _Invalid("attribute 'time' must carry a UTC offset")
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    if not isinstance(value, str):
        raise _Invalid(f"attribute 'time' must be an RFC 3339 string, got {_kind(value)}")
    m = _RFC3339.match(value.strip())
    if not m:
        raise _Invalid(f"attribute 'time' is not an RFC 3339 timestamp: {value[:60]!r}")
    date, clock, fraction, offset = m.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        whole = datetime.fromisoformat(f"{date}T{clock}{offset}")
    except ValueError as exc:
        raise _Invalid(f"attribute 'time' is not a valid timestamp: {value[:60]!r}") from exc
    nanos = int((fraction or "0").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + nanos


def parse_traceparent(value: Any) -> tuple[str, str]:
    """W3C ``traceparent`` → (trace id, parent span id); empty strings when unusable."""
    if not isinstance(value, str):
        return "", ""
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "ff":
        return "", ""
    trace_id, span_id = m.group(2), m.group(3)
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return "", ""
    return trace_id, span_id


def content_hash(body: bytes) -> str:
    """Dedup id of a plain message that has no message id."""
    return "sha256:" + hashlib.sha256(body).hexdigest()[:32]


def json_path(obj: Any, path: str) -> Any:
    """Follow a dotted path (``data.eventType``) into parsed JSON; ``None`` when absent."""
    current = obj
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def _is_json_type(content_type: str) -> bool:
    return not content_type or bool(_JSON_TYPE.match(content_type.strip()))


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value


def _bytes_value(data: bytes) -> dict[str, str]:
    return {"bytes": base64.b64encode(data).decode()}


def _body_data(body: bytes, content_type: str) -> Any:
    """Binary-mode data: JSON when the content type says so, else text, else base64."""
    if not body:
        return None
    if _is_json_type(content_type):
        try:
            return json.loads(body)
        except RecursionError:
            raise _Invalid("data is JSON nested too deeply to be read") from None
        except UnicodeDecodeError as exc:
            raise _Invalid(
                f"data is not UTF-8 although datacontenttype is JSON ({exc.reason})"
            ) from exc
        except json.JSONDecodeError as exc:
            raise _Invalid(
                f"data is not valid JSON although datacontenttype is "
                f"{content_type or 'application/json (default)'}: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from exc
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return _bytes_value(body)


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        # A body like "[[[[...]]]]" must be refused like any other unreadable body, not
        # crash the receiver (a tap would then never get past the message).
        raise EventDecodeError(f"{what} is JSON nested too deeply to be read") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(
            f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise EventDecodeError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


# -- the event itself ----------------------------------------------------------------------


def build_event(
    attributes: Mapping[str, Any],
    data: Any,
    env: Envelope,
    headers: Mapping[str, Any] | None = None,
) -> EventRecord:
    """Validate CloudEvents attributes and build the record; raise ``_Invalid`` with the reason."""
    missing = [a for a in ("id", "source", "specversion", "type") if a not in attributes]
    if missing:
        raise _Invalid(
            "missing required CloudEvents attribute"
            + ("s" if len(missing) > 1 else "")
            + ": "
            + ", ".join(missing)
        )
    for name in ("id", "source", "specversion", "type"):
        value = attributes[name]
        if not isinstance(value, str):
            raise _Invalid(f"attribute {name!r} must be a string, got {_kind(value)}")
        if not value:
            raise _Invalid(f"attribute {name!r} must not be empty")
    if attributes["specversion"] != SPECVERSION:
        raise _Invalid(
            f"unsupported specversion {attributes['specversion']!r}; only {SPECVERSION!r} is accepted"
        )
    for name in ("subject", "datacontenttype", "dataschema"):
        if name in attributes and not isinstance(attributes[name], str):
            raise _Invalid(f"attribute {name!r} must be a string, got {_kind(attributes[name])}")
    time_ns = parse_time(attributes["time"]) if attributes.get("time") not in (None, "") else 0
    extensions = {
        k: _text(v)
        for k, v in attributes.items()
        if k not in _CORE and k not in ("data", "data_base64")
    }
    kept_headers = dict(headers) if headers is not None else dict(env.headers)
    trace_id, parent = parse_traceparent(extensions.get("traceparent"))
    if not trace_id:
        trace_id, parent = parse_traceparent(_text(kept_headers.get("traceparent")))
    event = EventRecord(
        id=attributes["id"],
        source=attributes["source"],
        type=attributes["type"],
        transport=env.transport,
        specversion=attributes["specversion"],
        time_ns=time_ns,
        received_ns=env.received_ns,
        subject=attributes.get("subject") or "",
        datacontenttype=attributes.get("datacontenttype") or "",
        dataschema=attributes.get("dataschema") or "",
        data=data,
        extensions=extensions,
        headers=kept_headers,
        destination=env.destination,
        destination_details=dict(env.details),
        message_id=env.message_id,
        trace_id=trace_id,
        parent_span_id=parent,
    )
    return finalize_event_key(event)


def structured_event(obj: Any, env: Envelope) -> EventRecord:
    """One event in the JSON event format (structured mode, or one element of a batch)."""
    if not isinstance(obj, dict):
        raise _Invalid(f"a CloudEvent must be a JSON object, got {_kind(obj)}")
    # In the JSON format an attribute set to null is unset (the specification's own examples
    # carry "subject": null); a required one stays, to be reported as not a string.
    obj = {k: v for k, v in obj.items() if v is not None or k in _REQUIRED}
    if "time" in obj and not isinstance(obj["time"], str):
        raise _Invalid(f"attribute 'time' must be an RFC 3339 string, got {_kind(obj['time'])}")
    data: Any = obj.get("data")
    if "data" in obj and "data_base64" in obj:
        raise _Invalid("an event must not carry both 'data' and 'data_base64'")
    if "data_base64" in obj:
        raw = obj["data_base64"]
        if not isinstance(raw, str):
            raise _Invalid(f"'data_base64' must be a string, got {_kind(raw)}")
        try:
            data = _bytes_value(base64.b64decode(raw, validate=True))
        except binascii.Error as exc:
            raise _Invalid(f"'data_base64' is not valid base64: {exc}") from exc
    return build_event(obj, data, env)


def _attributes_from_headers(
    headers: Iterable[tuple[str, Any]], prefixes: Sequence[tuple[str, bool]]
) -> dict[str, Any]:
    """Binary-mode attributes; ``(prefix, percent_encoded)`` per binding convention."""
    attributes: dict[str, Any] = {}
    for name, value in headers:
        for prefix, percent_encoded in prefixes:
            if name[: len(prefix)].lower() == prefix.lower():
                attr = name[len(prefix) :].lower()
                value = _text(value)
                if percent_encoded and isinstance(value, str):
                    value = unquote(value)
                attributes[attr] = value
                break
    return attributes


def _has_prefix(name: str, prefixes: Sequence[tuple[str, bool]]) -> bool:
    return any(name[: len(p)].lower() == p.lower() for p, _ in prefixes)


def _one(env: Envelope, fn: Any, *args: Any, sample: Any = b"") -> Decoded:
    out = Decoded()
    try:
        out.events.append(fn(*args))
    except _Invalid as exc:
        out.rejections.append((0, Rejection(env.label, str(exc), sample_of(sample))))
    return out


# -- HTTP ---------------------------------------------------------------------------------


def http_mode(headers: Mapping[str, str]) -> str:
    """``binary``, ``structured`` or ``batch``, from the content type and ``ce-`` headers."""
    media = _media(headers.get("content-type", ""))
    if media == BATCH:
        return "batch"
    if media.startswith("application/cloudevents"):
        return "structured"
    return "binary"


def decode_http(headers: Mapping[str, str], body: bytes, env: Envelope) -> Decoded:
    """Decode a ``POST /v1/events`` request. Raise :class:`EventDecodeError` for a bad body.

    ``headers`` must have lowercase names (HTTP header names are case-insensitive).
    """
    mode = http_mode(headers)
    content_type = headers.get("content-type", "")
    if mode == "batch":
        items = _loads(body, "batch body")
        if not isinstance(items, list):
            raise EventDecodeError(f"a batch must be a JSON array of events, got {_kind(items)}")
        return decode_items(items, env)
    if mode == "structured":
        if _media(content_type) != STRUCTURED:
            raise EventDecodeError(
                f"unsupported event format {_media(content_type)!r}; use {STRUCTURED} or {BATCH}"
            )
        obj = _loads(body, "structured event body")
        event_headers = _keep_headers(headers, drop_ce=False)
        env.headers = event_headers
        return _one(env, structured_event, obj, env, sample=obj)
    attributes = _attributes_from_headers(headers.items(), ((HTTP_CE_PREFIX, True),))
    if content_type:
        attributes["datacontenttype"] = content_type
    env.headers = _keep_headers(headers, drop_ce=True)
    sample = {k: v for k, v in headers.items() if k.startswith(HTTP_CE_PREFIX)}

    def binary() -> EventRecord:
        if not any(k in attributes for k in REQUIRED_ATTRIBUTES):
            raise _Invalid(
                "not a CloudEvent: no ce-id, ce-source, ce-specversion, ce-type headers "
                f"(binary mode) and Content-Type is not {STRUCTURED} or {BATCH}"
            )
        missing = [a for a in ("id", "source", "specversion", "type") if a not in attributes]
        if missing:
            raise _Invalid(
                "missing required CloudEvents attribute"
                + ("s" if len(missing) > 1 else "")
                + ": "
                + ", ".join(missing)
                + " (headers "
                + ", ".join(f"ce-{m}" for m in missing)
                + ")"
            )
        return build_event(attributes, _body_data(body, content_type), env)

    return _one(env, binary, sample=sample or body)


def _keep_headers(headers: Mapping[str, Any], drop_ce: bool) -> dict[str, Any]:
    return {
        k: _text(v)
        for k, v in headers.items()
        if k.lower() not in _DROP_HEADERS and not (drop_ce and k.lower().startswith(HTTP_CE_PREFIX))
    }


# -- brokers --------------------------------------------------------------------------------


def _plain_event(obj: Any, body: bytes, env: Envelope, rule: PlainRule) -> EventRecord:
    type_ = ""
    if rule.type_field:
        found = json_path(obj, rule.type_field)
        if isinstance(found, str | int) and not isinstance(found, bool):
            type_ = str(found)
    type_ = type_ or rule.type_hint
    if not type_:
        where = f"field {rule.type_field!r}" if rule.type_field else "routing key/subject/topic"
        raise _Invalid(f"plain message has no event type ({where} is empty)")
    trace_id, parent = parse_traceparent(_text(env.headers.get("traceparent")))
    if not trace_id and isinstance(obj, Mapping):
        trace_id, parent = parse_traceparent(obj.get("traceparent"))
    event = EventRecord(
        id=env.message_id or content_hash(body),
        source=rule.source,
        type=type_,
        transport=env.transport,
        specversion="",
        time_ns=rule.time_ns,
        received_ns=env.received_ns,
        datacontenttype="application/json",
        data=obj,
        headers=dict(env.headers),
        destination=env.destination,
        destination_details=dict(env.details),
        message_id=env.message_id,
        trace_id=trace_id,
        parent_span_id=parent,
    )
    return finalize_event_key(event)


def decode_message(
    body: bytes,
    headers: Sequence[tuple[str, Any]],
    content_type: str,
    env: Envelope,
    rule: PlainRule,
    prefixes: Sequence[tuple[str, bool]],
    max_bytes: int = 0,
    extra_attributes: Mapping[str, Any] | None = None,
) -> Decoded:
    """Decode one broker message: CloudEvent (binary or structured) or plain JSON.

    ``prefixes`` are the binary-mode attribute prefixes of the transport's binding.
    """
    if max_bytes and len(body) > max_bytes:
        return Decoded(
            rejections=[
                (
                    0,
                    Rejection(
                        env.label,
                        f"message of {len(body)} bytes exceeds the limit of {max_bytes} bytes",
                        sample_of(body[:SAMPLE_CHARS]),
                    ),
                )
            ]
        )
    media = _media(content_type)
    attributes = _attributes_from_headers(headers, prefixes)
    env.headers = {name: _text(value) for name, value in headers if not _has_prefix(name, prefixes)}
    if attributes:
        for name, value in (extra_attributes or {}).items():
            attributes.setdefault(name, value)
        if content_type:
            attributes.setdefault("datacontenttype", content_type)
        return _one(
            env,
            lambda: build_event(
                attributes, _body_data(body, str(attributes.get("datacontenttype", ""))), env
            ),
            sample=dict(attributes),
        )
    if media == BATCH:
        try:
            items = _loads(body, "batch message")
        except EventDecodeError as exc:
            return Decoded(rejections=[(0, Rejection(env.label, str(exc), sample_of(body)))])
        return decode_items(items, env)
    try:
        obj = _loads(body, "message body")
    except EventDecodeError as exc:
        names = "/".join(p for p, _ in prefixes)
        reason = f"{exc}; not a CloudEvent (no {names} attributes) nor a JSON message"
        return Decoded(rejections=[(0, Rejection(env.label, reason, sample_of(body)))])
    if media.startswith("application/cloudevents") or (
        isinstance(obj, dict) and "specversion" in obj
    ):
        return _one(env, structured_event, obj, env, sample=obj)
    return _one(env, _plain_event, obj, body, env, rule, sample=body)


def decode_items(items: Any, env: Envelope) -> Decoded:
    """A JSON array of structured events (batch), each validated on its own."""
    if not isinstance(items, list):
        return Decoded(
            rejections=[
                (
                    0,
                    Rejection(
                        env.label,
                        f"a batch must be a JSON array of events, got {_kind(items)}",
                        sample_of(items),
                    ),
                )
            ]
        )
    out = Decoded()
    for index, item in enumerate(items):
        try:
            out.events.append(structured_event(item, env))
        except _Invalid as exc:
            out.rejections.append(
                (index, Rejection(env.label, f"event {index}: {exc}", sample_of(item)))
            )
    return out


# The AMQP binding carries typed values; the RabbitMQ SDK binding writes percent-encoded
# "ce-" headers, and Kafka and NATS header values are plain UTF-8.
AMQP_PREFIXES: Final = (
    (CE_PREFIX_COLON, False),
    (CE_PREFIX_UNDERSCORE, False),
    ("ce-", True),
    ("ce_", True),
)
NATS_PREFIXES: Final = (("ce-", False),)
KAFKA_PREFIXES: Final = ((KAFKA_CE_PREFIX, False),)


def decode_amqp(
    body: bytes,
    properties: Mapping[str, Any],
    content_type: str,
    *,
    exchange: str,
    routing_key: str,
    message_id: str = "",
    timestamp_ns: int = 0,
    received_ns: int = 0,
    type_field: str = "",
    max_bytes: int = 0,
) -> Decoded:
    """One AMQP message (application properties as ``properties``)."""
    env = Envelope(
        transport="amqp",
        received_ns=received_ns,
        label=f"amqp:{exchange}",
        destination=f"{exchange}/{routing_key}",
        details={"exchange": exchange, "routing_key": routing_key},
        message_id=message_id,
    )
    rule = PlainRule(
        source=f"amqp://{exchange}",
        type_hint=routing_key,
        type_field=type_field,
        time_ns=timestamp_ns,
    )
    return decode_message(
        body, list(properties.items()), content_type, env, rule, AMQP_PREFIXES, max_bytes
    )


def decode_nats(
    body: bytes,
    headers: Mapping[str, str] | None,
    *,
    subject: str,
    stream: str = "",
    sequence: int = 0,
    received_ns: int = 0,
    type_field: str = "",
    max_bytes: int = 0,
) -> Decoded:
    """One NATS (JetStream) message."""
    headers = dict(headers or {})
    message_id = headers.get("Nats-Msg-Id", "")
    env = Envelope(
        transport="nats",
        received_ns=received_ns,
        label=f"nats:{subject}",
        destination=subject,
        details={"subject": subject, "stream": stream, "sequence": sequence},
        message_id=message_id,
    )
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    pairs = [(k, v) for k, v in headers.items() if k.lower() != "content-type"]
    rule = PlainRule(source=f"nats://{stream or subject}", type_hint=subject, type_field=type_field)
    return decode_message(body, pairs, content_type, env, rule, NATS_PREFIXES, max_bytes)


def decode_kafka(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    timestamp_ms: int = 0,
    received_ns: int = 0,
    type_field: str = "",
    max_bytes: int = 0,
) -> Decoded:
    """One Kafka record; plain records use topic/partition/offset as their id."""
    body = value or b""
    content_type = ""
    pairs: list[tuple[str, Any]] = []
    for name, raw in headers:
        text = (raw or b"").decode("utf-8", "replace")
        if name.lower() == "content-type":
            content_type = text
        else:
            pairs.append((name, text))
    message_id = next((v for k, v in pairs if k.lower() in ("message-id", "message_id")), "")
    details: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if key is not None:
        details["key"] = key.decode("utf-8", "replace")
    env = Envelope(
        transport="kafka",
        received_ns=received_ns,
        label=f"kafka:{topic}",
        destination=topic,
        details=details,
        message_id=message_id or f"{topic}/{partition}/{offset}",
    )
    rule = PlainRule(
        source=f"kafka://{topic}",
        type_hint=topic,
        type_field=type_field,
        time_ns=timestamp_ms * 1_000_000,
    )
    extra = {"partitionkey": details["key"]} if key is not None else None
    return decode_message(body, pairs, content_type, env, rule, KAFKA_PREFIXES, max_bytes, extra)
