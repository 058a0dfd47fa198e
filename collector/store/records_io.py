"""Loading stored rows back into normalized records for the analysis core."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from collector.normalize.records import EventRecord, LogRecord, SpanRecord
from collector.store.columns import (
    EVENT_COLUMNS,
    LOG_COLUMNS,
    SPAN_COLUMNS,
    from_json,
    from_json_exact,
)

Column = tuple[str, Any, bool]  # (column, arrow type, stored as JSON text)


def _in_field_order(cls: Any, columns: list[Column]) -> list[Column]:
    # Columns are selected in the record's field order, so records are ``cls(*values)``.
    by_name = {c[0]: c for c in columns}
    return [by_name[f.name] for f in dataclasses.fields(cls)]


def _shared_values(
    column: pa.ChunkedArray,
    loads: Callable[[str], Any] | None = None,
    empty: type | None = None,
) -> list[Any]:
    """A column's values, each distinct value made once and shared by the rows that hold it;
    with ``loads``, a JSON text column parsed.

    Records treat these values as read-only. Most JSON texts repeat (one resource, one
    scope, no events, the same attributes from saga to saga), so parsing only the distinct
    ones is several times faster than parsing every row; a text column of few distinct
    values (span names, services) takes less memory and compares faster as shared strings.
    With ``empty``, a null or a value of another type becomes an empty value of that type.
    """
    encoded = column.combine_chunks().dictionary_encode(null_encoding="encode")
    distinct = encoded.dictionary.to_pylist()
    if loads is not None:
        distinct = [None if v is None else loads(v) for v in distinct]
    if empty is not None:
        distinct = [v if isinstance(v, empty) else empty() for v in distinct]
    return list(map(distinct.__getitem__, encoded.indices.to_pylist()))


def _records(
    cls: Any,
    columns: list[Column],
    table: pa.Table,
    loads: Callable[[str], Any] = from_json,
    empty: dict[str, type] | None = None,
) -> list[Any]:
    """Records from a table selected in ``columns`` order (see :func:`_in_field_order`).

    Built column by column: one conversion of each column to Python values, then one
    constructor call per record. A field the table does not hold gets its default value,
    one object shared by every record, like the parsed JSON values: records are read-only.
    """
    present = dict(zip(table.column_names, table.columns, strict=True))
    values: list[Iterable[Any]] = []
    for (name, _, is_json), f in zip(columns, dataclasses.fields(cls), strict=True):
        column = present.get(name)
        if column is None:
            values.append(itertools.repeat(_default(f)))
        elif is_json:
            values.append(_shared_values(column, loads, (empty or {}).get(name)))
        elif name in _SHARED_TEXT:
            values.append(_shared_values(column))
        else:
            values.append(column.to_pylist())
    return list(map(cls, *values))


# Text columns whose values repeat from row to row: a trace's id, span names, services.
_SHARED_TEXT = frozenset({"trace_id", "name", "service_name", "status_message"})


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    if f.default is dataclasses.MISSING:
        raise ValueError(f"no column for {f.name}, which has no default")
    return f.default


_SPAN_FIELDS = _in_field_order(SpanRecord, SPAN_COLUMNS)
_LOG_FIELDS = _in_field_order(LogRecord, LOG_COLUMNS)
_EVENT_FIELDS = _in_field_order(EventRecord, EVENT_COLUMNS)
SPAN_SELECT = ", ".join(c[0] for c in _SPAN_FIELDS)
LOG_SELECT = ", ".join(c[0] for c in _LOG_FIELDS)
EVENT_SELECT = ", ".join(c[0] for c in _EVENT_FIELDS)

_SPAN_EMPTY: dict[str, type] = {
    "attributes": dict,
    "resource_attributes": dict,
    "scope_attributes": dict,
    "events": list,
    "links": list,
}
_LOG_EMPTY: dict[str, type] = {"attributes": dict, "resource_attributes": dict}
_EVENT_EMPTY: dict[str, type] = {"extensions": dict, "headers": dict, "destination_details": dict}


def _select(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, list[str]] | None = None
) -> pa.Table:
    return conn.sql(sql, params=params).to_arrow_table()


def _of_traces(
    conn: duckdb.DuckDBPyConnection, table: str, select: str, trace_ids: list[str] | None
) -> pa.Table | None:
    """Rows of a table with a trace id: of these traces, or every one with ``None``."""
    if trace_ids is None:
        return _select(conn, f"SELECT {select} FROM {table} WHERE trace_id <> ''")
    if not trace_ids:
        return None
    return _select(
        conn,
        f"SELECT {select} FROM {table} WHERE trace_id IN (SELECT unnest($ids))",
        {"ids": trace_ids},
    )


def load_spans(conn: duckdb.DuckDBPyConnection, trace_ids: list[str] | None) -> list[SpanRecord]:
    """The stored spans of these traces; with ``None``, every stored span."""
    table = _of_traces(conn, "spans", SPAN_SELECT, trace_ids)
    return [] if table is None else span_records(table)


def load_span_table(
    conn: duckdb.DuckDBPyConnection, fields: Sequence[str] | None = None
) -> pa.Table:
    """Every stored span as one Arrow table, for :func:`span_records` of any part of it;
    with ``fields``, only those :class:`SpanRecord` fields (the records built from it hold
    defaults in the others)."""
    select = SPAN_SELECT
    if fields is not None:
        select = ", ".join(c[0] for c in _SPAN_FIELDS if c[0] in fields)
    table = _of_traces(conn, "spans", select, None)
    assert table is not None
    return table


def span_records(table: pa.Table) -> list[SpanRecord]:
    """Span records from rows of :func:`load_span_table` (or any selection of them)."""
    return _records(SpanRecord, _SPAN_FIELDS, table, empty=_SPAN_EMPTY)


@dataclass
class IdentityColumns:
    """What stored spans say about saga identity, one entry per distinct combination.

    ``attributes`` holds only a span's identity attributes, ``links`` only the trace id of
    each link: all that identity reads. Spans of one trace that say the same are one entry.
    """

    trace_ids: list[str]
    attributes: list[dict[str, Any]]
    conversation_ids: list[str]
    links: list[list[dict[str, Any]]]


def _pointer(name: str) -> str:
    """The JSON pointer (RFC 6901) of a top-level member: any name, quotes and dots included."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


# The identity attributes a span carries, as a JSON object of those alone, and the traces
# its links point to; DISTINCT folds the spans of a trace that carry the same. Each span's
# attributes are parsed once: the pointers find the names it has, or none (most spans).
_IDENTITY_SQL = """
SELECT DISTINCT
    trace_id,
    '{' || array_to_string(
        [to_json(pair[1]) || ':' || pair[2]
         FOR pair IN list_zip($names, found) IF pair[2] IS NOT NULL],
        ',') || '}' AS attributes,
    messaging_conversation_id,
    linked
FROM (
    SELECT
        trace_id,
        messaging_conversation_id,
        json_extract(attributes, $pointers) AS found,
        CASE WHEN links <> '[]' THEN json_extract_string(links, '$[*].trace_id') END AS linked
    FROM spans
    WHERE trace_id <> ''
)
WHERE messaging_conversation_id <> '' OR len(linked) > 0 OR list_count(found) > 0
"""


def load_identity_columns(
    conn: duckdb.DuckDBPyConnection, attribute_names: Iterable[str]
) -> IdentityColumns:
    """:class:`IdentityColumns` of every stored span that may carry identity: one with any
    of ``attribute_names``, a conversation id or a link. The others cannot, and are most.
    """
    names = sorted(attribute_names)
    table = _select(conn, _IDENTITY_SQL, {"names": names, "pointers": list(map(_pointer, names))})
    return IdentityColumns(
        trace_ids=table.column("trace_id").to_pylist(),
        attributes=list(map(from_json, table.column("attributes").to_pylist())),
        conversation_ids=table.column("messaging_conversation_id").to_pylist(),
        links=[
            [{"trace_id": t} for t in linked] if linked else []
            for linked in table.column("linked").to_pylist()
        ],
    )


def load_logs(conn: duckdb.DuckDBPyConnection, trace_ids: list[str] | None) -> list[LogRecord]:
    """The stored log records of these traces; with ``None``, every one with a trace."""
    table = _of_traces(conn, "logs", LOG_SELECT, trace_ids)
    return [] if table is None else _records(LogRecord, _LOG_FIELDS, table, empty=_LOG_EMPTY)


def load_events(
    conn: duckdb.DuckDBPyConnection, event_keys: list[str] | None, trace_ids: list[str]
) -> list[EventRecord]:
    """The stored events with these keys or in these traces; with ``None``, every event."""
    if event_keys is None:
        table = _select(conn, f"SELECT {EVENT_SELECT} FROM events")
    elif not event_keys and not trace_ids:
        return []
    else:
        table = _select(
            conn,
            f"SELECT {EVENT_SELECT} FROM events WHERE event_key IN (SELECT unnest($keys)) "
            "OR trace_id IN (SELECT unnest($ids))",
            {"keys": event_keys, "ids": trace_ids},
        )
    # Event payloads are any JSON, integers of any size included.
    return _records(EventRecord, _EVENT_FIELDS, table, from_json_exact, _EVENT_EMPTY)
