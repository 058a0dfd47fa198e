"""Normalized records: what every wire format is decoded into, and what the store keeps.

Ids are lowercase hex strings (trace 32 chars, span 16 chars). Times are integer
nanoseconds since the Unix epoch. Attribute values keep their OTLP type: str, bool,
int, float, list (array) or dict (kvlist); bytes values become ``{"bytes": "<base64>"}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

Attributes = dict[str, Any]


@dataclass(slots=True)
class SpanRecord:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: str = ""
    kind: int = 0
    status_code: int = 0  # 0 unset, 1 ok, 2 error (OTLP StatusCode)
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    resource_attributes: Attributes = field(default_factory=dict)
    service_name: str = ""
    scope_name: str = ""
    scope_version: str = ""
    scope_attributes: Attributes = field(default_factory=dict)
    # [{"name", "time_ns", "attributes", "dropped_attributes_count"}]
    events: list[dict[str, Any]] = field(default_factory=list)
    # [{"trace_id", "span_id", "trace_state", "flags", "attributes", "dropped_attributes_count"}]
    links: list[dict[str, Any]] = field(default_factory=list)
    trace_state: str = ""
    flags: int = 0
    dropped_attributes_count: int = 0
    dropped_events_count: int = 0
    dropped_links_count: int = 0
    resource_schema_url: str = ""
    scope_schema_url: str = ""
    # Canonical messaging columns, filled from old and new semantic-convention names.
    messaging_system: str = ""
    messaging_destination: str = ""
    messaging_operation: str = ""
    messaging_conversation_id: str = ""
    messaging_message_id: str = ""
    server_address: str = ""

    @property
    def ref(self) -> str:
        return f"span:{self.trace_id}:{self.span_id}"


@dataclass(slots=True)
class LogRecord:
    time_ns: int
    observed_time_ns: int = 0
    severity_number: int = 0
    severity_text: str = ""
    body: Any = None
    attributes: Attributes = field(default_factory=dict)
    resource_attributes: Attributes = field(default_factory=dict)
    service_name: str = ""
    scope_name: str = ""
    scope_version: str = ""
    trace_id: str = ""
    span_id: str = ""
    flags: int = 0
    event_name: str = ""
    dropped_attributes_count: int = 0
    record_id: str = ""  # content hash; filled by finalize_log_id()

    @property
    def ref(self) -> str:
        return f"log:{self.record_id}"


@dataclass(slots=True)
class EventRecord:
    """A broker or CloudEvents event. ``source`` + ``id`` identify it (CloudEvents rule)."""

    id: str
    source: str
    type: str
    transport: str  # http | amqp | nats | kafka | file
    specversion: str = "1.0"
    time_ns: int = 0  # the event's own time; 0 when it carries none
    received_ns: int = 0
    subject: str = ""
    datacontenttype: str = ""
    dataschema: str = ""
    data: Any = None
    extensions: Attributes = field(default_factory=dict)
    headers: Attributes = field(default_factory=dict)
    destination: str = ""  # exchange/routing key, subject, topic
    # transport details: {"exchange", "routing_key", "stream", "sequence", "partition", "offset"}
    destination_details: Attributes = field(default_factory=dict)
    message_id: str = ""
    trace_id: str = ""  # from a W3C traceparent header or extension
    parent_span_id: str = ""
    event_key: str = ""  # dedup key; filled by finalize_event_key()

    @property
    def ref(self) -> str:
        return f"event:{self.event_key}"


@dataclass(slots=True)
class Rejection:
    """An item that could not be stored, kept so nothing disappears silently."""

    source: str  # e.g. "otlp-http", "amqp:orders", "import:file.jsonl:12"
    reason: str
    sample: str = ""  # a truncated copy of the offending input


SPAN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SpanRecord))


def _span_field_lists() -> dict[str, list[Any]]:
    return {name: [] for name in SPAN_FIELDS}


@dataclass(slots=True)
class SpanColumns:
    """Spans held column by column: one list per :class:`SpanRecord` field, in field order.

    The protobuf decoder fills these directly, so the hot path builds no object per span;
    :meth:`records` gives the same spans as records where one is wanted.
    """

    columns: dict[str, list[Any]] = field(default_factory=_span_field_lists)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["trace_id"])

    def records(self) -> list[SpanRecord]:
        return [SpanRecord(*row) for row in zip(*self.columns.values(), strict=True)]


@dataclass(slots=True)
class RecordBatch:
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.spans) + len(self.logs) + len(self.events)

    def extend(self, other: RecordBatch) -> None:
        self.spans.extend(other.spans)
        self.logs.extend(other.logs)
        self.events.extend(other.events)
        self.rejections.extend(other.rejections)


def canonical_json(value: Any) -> str:
    """Deterministic JSON used for hashing and storage."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def finalize_log_id(log: LogRecord) -> LogRecord:
    """Give a log record a content-derived id so a retried export stores it once."""
    if not log.record_id:
        content = canonical_json(
            [
                log.time_ns,
                log.observed_time_ns,
                log.severity_number,
                log.severity_text,
                log.body,
                log.attributes,
                log.resource_attributes,
                log.scope_name,
                log.trace_id,
                log.span_id,
                log.event_name,
            ]
        )
        log.record_id = hashlib.sha256(content.encode()).hexdigest()[:32]
    return log


def finalize_event_key(event: EventRecord) -> EventRecord:
    """Dedup key: CloudEvents source + id; plain messages use their message id or content hash."""
    if not event.event_key:
        basis = f"{event.source}\x1f{event.id}"
        event.event_key = hashlib.sha256(basis.encode()).hexdigest()[:32]
    return event
