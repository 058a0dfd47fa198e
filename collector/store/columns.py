"""Normalized records -> Arrow tables shaped like the store's tables, ready for bulk insert.

Building the columns happens on the request side, so the write queue holds compact Arrow
buffers instead of Python objects and its memory stays bounded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson
import pyarrow as pa

from collector.normalize.records import (
    EventRecord,
    LogRecord,
    RecordBatch,
    Rejection,
    SpanColumns,
    SpanRecord,
)

_dumps = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str
).encode
_dumps_sorted = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str, sort_keys=True
).encode


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# Dates, dataclasses and the like go through ``default=str``, as with the standard library.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_ORJSON_SORTED = _ORJSON_OPTIONS | orjson.OPT_SORT_KEYS


def to_json(value: Any, sort_keys: bool = False) -> str:
    """JSON text for a JSON column. NaN and infinities (valid OTLP doubles) become strings.

    orjson writes the common case several times faster than the standard library; what it
    does not take (integers beyond 64 bits, keys that are not strings) and what it would
    write differently (non-finite floats, which it turns into null) go the standard way.
    """
    try:
        text = orjson.dumps(
            value, default=str, option=_ORJSON_SORTED if sort_keys else _ORJSON_OPTIONS
        )
    except TypeError:
        pass
    else:
        if b"null" not in text:
            return text.decode()
    dumps = _dumps_sorted if sort_keys else _dumps
    try:
        return dumps(value)
    except ValueError:
        return dumps(_clean(value))


def from_json(text: str) -> Any:
    """Parse JSON text this module wrote for a span or log column (integers fit 64 bits)."""
    return orjson.loads(text)


# Nineteen digits in a row: maybe an integer orjson would read as a float (beyond 64 bits).
_LONG_DIGITS = re.compile(r"\d{19}")


def from_json_exact(text: str) -> Any:
    """Parse any JSON text as the standard library does: every integer exact, whatever its
    size, and NaN, infinities and lone surrogates as it reads them (event payloads).

    orjson parses the rest several times faster, to the same values; text where a number
    may not fit 64 bits, or that orjson refuses, goes the standard way.
    """
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


_I64 = pa.int64()
_STR = pa.string()
_U32 = pa.uint32()
_I8 = pa.int8()
# JSON columns hold text this module's encoder (to_json) wrote, so valid JSON: typed as
# such, DuckDB stores it in its JSON columns as it is, instead of parsing every value again
# to check it.
_JSON = pa.json_()

SPAN_COLUMNS: list[tuple[str, pa.DataType, bool]] = [
    # (column, arrow type, stored as JSON text)
    ("trace_id", _STR, False),
    ("span_id", _STR, False),
    ("parent_span_id", _STR, False),
    ("name", _STR, False),
    ("kind", _I8, False),
    ("start_ns", _I64, False),
    ("end_ns", _I64, False),
    ("status_code", _I8, False),
    ("status_message", _STR, False),
    ("attributes", _JSON, True),
    ("resource_attributes", _JSON, True),
    ("service_name", _STR, False),
    ("scope_name", _STR, False),
    ("scope_version", _STR, False),
    ("scope_attributes", _JSON, True),
    ("events", _JSON, True),
    ("links", _JSON, True),
    ("trace_state", _STR, False),
    ("flags", _U32, False),
    ("dropped_attributes_count", _U32, False),
    ("dropped_events_count", _U32, False),
    ("dropped_links_count", _U32, False),
    ("resource_schema_url", _STR, False),
    ("scope_schema_url", _STR, False),
    ("messaging_system", _STR, False),
    ("messaging_destination", _STR, False),
    ("messaging_operation", _STR, False),
    ("messaging_conversation_id", _STR, False),
    ("messaging_message_id", _STR, False),
    ("server_address", _STR, False),
]

LOG_COLUMNS: list[tuple[str, pa.DataType, bool]] = [
    ("record_id", _STR, False),
    ("time_ns", _I64, False),
    ("observed_time_ns", _I64, False),
    ("severity_number", _I8, False),
    ("severity_text", _STR, False),
    ("body", _JSON, True),
    ("attributes", _JSON, True),
    ("resource_attributes", _JSON, True),
    ("service_name", _STR, False),
    ("scope_name", _STR, False),
    ("scope_version", _STR, False),
    ("trace_id", _STR, False),
    ("span_id", _STR, False),
    ("flags", _U32, False),
    ("event_name", _STR, False),
    ("dropped_attributes_count", _U32, False),
]

EVENT_COLUMNS: list[tuple[str, pa.DataType, bool]] = [
    ("event_key", _STR, False),
    ("id", _STR, False),
    ("source", _STR, False),
    ("type", _STR, False),
    ("transport", _STR, False),
    ("specversion", _STR, False),
    ("time_ns", _I64, False),
    ("received_ns", _I64, False),
    ("subject", _STR, False),
    ("datacontenttype", _STR, False),
    ("dataschema", _STR, False),
    ("data", _JSON, True),
    ("extensions", _JSON, True),
    ("headers", _JSON, True),
    ("destination", _STR, False),
    ("destination_details", _JSON, True),
    ("message_id", _STR, False),
    ("trace_id", _STR, False),
    ("parent_span_id", _STR, False),
]


# Empty values as JSON, without a call to the encoder; other false values ("", 0, false: a
# log body may be any of them) are encoded as they are.
_EMPTY_JSON: dict[type, str] = {type(None): "null", dict: "{}", list: "[]"}


def _json_column(values: tuple[Any, ...], sort_keys: bool) -> list[str]:
    # Decoders share one resource/scope attribute dict among all spans of that resource,
    # so encoding each distinct object once saves most of the JSON work.
    memo: dict[int, str] = {}
    out = []
    for value in values:
        if not value and type(value) in _EMPTY_JSON:
            out.append(_EMPTY_JSON[type(value)])
            continue
        key = id(value)
        text = memo.get(key)
        if text is None:
            text = memo[key] = to_json(value, sort_keys)
        out.append(text)
    return out


def attribute_columns(records: Sequence[Any], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The attributes ``names`` of every record, one tuple per name, in record order.

    One C-level getter per record and a transpose, rather than a getattr per cell.
    """
    if not records:
        return [() for _ in names]
    get = attrgetter(*names)
    rows = map(get, records) if len(names) > 1 else ((get(r),) for r in records)
    return list(zip(*rows, strict=True))


def _arrow(
    values: list[Any], columns: list[tuple[str, pa.DataType, bool]], sort_keys: bool
) -> pa.Table:
    arrays = [
        pa.array(_json_column(column, sort_keys) if is_json else column, type=typ)
        for column, (_, typ, is_json) in zip(values, columns, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=[c[0] for c in columns])


# What Arrow raises for a value its column cannot hold: an integer out of range, a string
# that is not Unicode text (an unpaired surrogate from a JSON escape).
_UNSTORABLE = (ValueError, TypeError, OverflowError, pa.ArrowException)


def _storable(
    values: list[Any],
    columns: list[tuple[str, pa.DataType, bool]],
    sort_keys: bool,
    rejections: list[tuple[str, str, str]],
    what: str,
) -> tuple[pa.Table, list[int] | None]:
    """The Arrow table of ``values``, and None; or, when some rows cannot be stored, the table
    of the others and their row numbers, each refused row added to ``rejections``.

    Decoders check what they know to check; this catches any value a column cannot hold,
    so one such item costs itself and not the request's others.
    """
    try:
        return _arrow(values, columns, sort_keys), None
    except _UNSTORABLE:
        pass
    kept: list[int] = []
    for row in range(len(values[0])):
        problem = ""
        for column, (name, typ, is_json) in zip(values, columns, strict=True):
            try:
                _arrow([(column[row],)], [(name, typ, is_json)], sort_keys)
            except _UNSTORABLE as exc:
                problem = _unstorable(name, column[row], exc)
                break
        if problem:
            sample = {c[0]: column[row] for column, c in zip(values, columns, strict=True)}
            rejections.append(("store", f"{what} rejected: {problem}", repr(sample)[:2000]))
        else:
            kept.append(row)
    rows = [tuple(column[i] for i in kept) for column in values]
    return _arrow(rows, columns, sort_keys), kept


def _table(
    records: list[Any],
    columns: list[tuple[str, pa.DataType, bool]],
    sort_keys: bool,
    rejections: list[tuple[str, str, str]],
    what: str,
) -> pa.Table:
    """The records' Arrow table, less any whose values their columns cannot hold."""
    values = attribute_columns(records, [c[0] for c in columns])
    return _storable(values, columns, sort_keys, rejections, what)[0]


def _unstorable(name: str, value: Any, exc: Exception) -> str:
    if isinstance(exc, UnicodeError):
        return f"{name} holds an unpaired surrogate (\\ud800-\\udfff), which is not Unicode text"
    if isinstance(value, int):
        return f"{name} {value} is out of range"
    return f"{name} cannot be stored: {exc}"


def _unique(records: list[Any], key: Any) -> list[Any]:
    # A request may repeat an item; keep the first so one INSERT never conflicts with itself.
    seen: dict[Any, Any] = {}
    for r in records:
        seen.setdefault(key(r), r)
    return list(seen.values()) if len(seen) != len(records) else records


@dataclass(slots=True)
class PreparedBatch:
    """A request's records as Arrow tables, ready for the writer."""

    spans: pa.Table | None = None
    logs: pa.Table | None = None
    events: pa.Table | None = None
    rejections: list[tuple[str, str, str]] = field(default_factory=list)
    received: int = 0  # items offered, before in-request dedup

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in (self.spans, self.logs, self.events) if t is not None)


# Span attributes are a map with no order (a repeated key keeps its last value). Stored
# sorted by key, as trace viewers list them, they read the same whichever format and
# exporter sent them.
_SPAN_KEYS_SORTED = True


def prepare_batch(batch: RecordBatch) -> PreparedBatch:
    """Turn a decoded batch into Arrow tables (deduplicated within the batch)."""
    prepared = PreparedBatch(received=len(batch))
    prepared.rejections = _rejections(batch.rejections)
    spans: list[SpanRecord] = _unique(batch.spans, lambda s: (s.trace_id, s.span_id))
    logs: list[LogRecord] = _unique(batch.logs, lambda r: r.record_id)
    events: list[EventRecord] = _unique(batch.events, lambda e: e.event_key)
    out = prepared.rejections
    if spans:
        prepared.spans = _table(spans, SPAN_COLUMNS, _SPAN_KEYS_SORTED, out, "span")
    if logs:
        prepared.logs = _table(logs, LOG_COLUMNS, False, out, "log record")
    if events:
        prepared.events = _table(events, EVENT_COLUMNS, False, out, "event")
    # an item refused here is a rejection, not a duplicate of something stored
    prepared.received -= len(out) - len(batch.rejections)
    return prepared


def prepare_span_columns(spans: SpanColumns) -> PreparedBatch:
    """Turn decoded span columns into the spans table (deduplicated within the request)."""
    prepared = PreparedBatch(received=len(spans))
    prepared.rejections = _rejections(spans.rejections)
    if len(spans):
        columns = spans.columns
        values = [columns[name] for name, _, _ in SPAN_COLUMNS]
        table, kept_rows = _storable(
            values, SPAN_COLUMNS, _SPAN_KEYS_SORTED, prepared.rejections, "span"
        )
        keys = list(zip(columns["trace_id"], columns["span_id"], strict=True))
        if kept_rows is not None:
            keys = [keys[i] for i in kept_rows]
            prepared.received = len(kept_rows)
        rows = list(range(len(keys)))
        kept = _unique(rows, keys.__getitem__)
        if kept is not rows:
            table = table.take(kept)
        prepared.spans = table
    return prepared


def _rejections(rejections: list[Rejection]) -> list[tuple[str, str, str]]:
    # A refused item may hold text that is not Unicode (an unpaired surrogate): escaped,
    # it can still be stored and shown.
    return [(r.source, _text(r.reason), _text(r.sample[:2000])) for r in rejections]


def _text(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
