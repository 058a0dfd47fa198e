"""Loading stored rows back into normalized records for the analysis core."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from typing import Any

import duckdb

from collector.normalize.records import EventRecord, LogRecord, SpanRecord
from collector.store.columns import EVENT_COLUMNS, LOG_COLUMNS, SPAN_COLUMNS, from_json


def _in_field_order(cls: Any, columns: list[tuple[str, Any, bool]]) -> list[tuple[str, Any, bool]]:
    # Rows are selected in the record's field order, so each becomes ``cls(*row)``.
    by_name = {c[0]: c for c in columns}
    return [by_name[f.name] for f in dataclasses.fields(cls)]


# Columns whose values repeat across records (one resource, one scope, no events): parse
# each distinct text once and share the result. Records treat these values as read-only.
_SHARED = {
    "resource_attributes",
    "scope_attributes",
    "events",
    "links",
    "headers",
    "destination_details",
}


def _build(
    cls: Any,
    columns: list[tuple[str, Any, bool]],
    rows: Iterable[tuple[Any, ...]],
    _loads: Callable[[str], Any] = from_json,
) -> list[Any]:
    """Records from rows selected in ``columns`` order (see :func:`_in_field_order`)."""
    json_idx = [i for i, c in enumerate(columns) if c[2] and c[0] not in _SHARED]
    shared_idx = [i for i, c in enumerate(columns) if c[2] and c[0] in _SHARED]
    memo: dict[str, Any] = {}
    out = []
    for row in rows:
        values = list(row)
        for i in json_idx:
            v = values[i]
            values[i] = _loads(v) if v is not None else None
        for i in shared_idx:
            v = values[i]
            if v is None:
                continue
            parsed = memo.get(v)
            if parsed is None:
                parsed = memo[v] = _loads(v)
            values[i] = parsed
        out.append(cls(*values))
    return out


_SPAN_FIELDS = _in_field_order(SpanRecord, SPAN_COLUMNS)
_LOG_FIELDS = _in_field_order(LogRecord, LOG_COLUMNS)
_EVENT_FIELDS = _in_field_order(EventRecord, EVENT_COLUMNS)
SPAN_SELECT = ", ".join(c[0] for c in _SPAN_FIELDS)
LOG_SELECT = ", ".join(c[0] for c in _LOG_FIELDS)
EVENT_SELECT = ", ".join(c[0] for c in _EVENT_FIELDS)


def spans_from_rows(rows: Iterable[tuple[Any, ...]]) -> list[SpanRecord]:
    spans: list[SpanRecord] = _build(SpanRecord, _SPAN_FIELDS, rows)
    for s in spans:
        for name in ("attributes", "resource_attributes", "scope_attributes"):
            if not isinstance(getattr(s, name), dict):
                setattr(s, name, {})
        for name in ("events", "links"):
            if not isinstance(getattr(s, name), list):
                setattr(s, name, [])
    return spans


def load_spans(conn: duckdb.DuckDBPyConnection, trace_ids: list[str]) -> list[SpanRecord]:
    if not trace_ids:
        return []
    rows = conn.execute(
        f"SELECT {SPAN_SELECT} FROM spans WHERE trace_id IN (SELECT unnest(?))", [trace_ids]
    ).fetchall()
    return spans_from_rows(rows)


def load_logs(conn: duckdb.DuckDBPyConnection, trace_ids: list[str]) -> list[LogRecord]:
    if not trace_ids:
        return []
    rows = conn.execute(
        f"SELECT {LOG_SELECT} FROM logs WHERE trace_id IN (SELECT unnest(?))", [trace_ids]
    ).fetchall()
    logs: list[LogRecord] = _build(LogRecord, _LOG_FIELDS, rows)
    for r in logs:
        if not isinstance(r.attributes, dict):
            r.attributes = {}
        if not isinstance(r.resource_attributes, dict):
            r.resource_attributes = {}
    return logs


def load_events(
    conn: duckdb.DuckDBPyConnection, event_keys: list[str], trace_ids: list[str]
) -> list[EventRecord]:
    if not event_keys and not trace_ids:
        return []
    rows = conn.execute(
        f"SELECT {EVENT_SELECT} FROM events WHERE event_key IN (SELECT unnest(?)) "
        "OR trace_id IN (SELECT unnest(?))",
        [event_keys, trace_ids],
    ).fetchall()
    # Event payloads are any JSON, integers of any size included: the standard parser keeps them.
    events: list[EventRecord] = _build(EventRecord, _EVENT_FIELDS, rows, json.loads)
    for e in events:
        for name in ("extensions", "headers", "destination_details"):
            if not isinstance(getattr(e, name), dict):
                setattr(e, name, {})
    return events
