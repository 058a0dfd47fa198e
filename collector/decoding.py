"""Request bodies (OTLP, CloudEvents over HTTP) to Arrow batches: what a receiver does to a
body before the store.

Run in the collector's threads or in its decode processes (``--decode-processes``), which
import this module and what it needs, and no more (see ``collector.helpers``).
"""

from __future__ import annotations

from collections.abc import Callable

from collector.normalize import otlp
from collector.normalize.cloudevents import Decoded, Envelope, decode_http
from collector.normalize.records import RecordBatch, SpanColumns
from collector.store.columns import PreparedBatch, prepare_batch, prepare_span_columns

Decoder = Callable[[bytes], RecordBatch | SpanColumns]

# (signal, as JSON) -> decoder
DECODERS: dict[tuple[str, bool], Decoder] = {
    ("traces", False): otlp.decode_trace_columns,
    ("traces", True): otlp.decode_traces_json,
    ("logs", False): otlp.decode_logs_protobuf,
    ("logs", True): otlp.decode_logs_json,
}


def decode_prepared(decode: Decoder, body: bytes) -> tuple[PreparedBatch, str]:
    """Decode and prepare a request body; also return the partial-success message."""
    batch = decode(body)
    if isinstance(batch, SpanColumns):
        prepared = prepare_span_columns(batch)
    else:
        prepared = prepare_batch(batch)
    # What the decoder refused, then any value the store could not hold.
    reasons = [reason for _, reason, _ in prepared.rejections]
    message = "; ".join(dict.fromkeys(reasons[:5]))
    if len(reasons) > 5:
        message += f"; and {len(reasons) - 5} more"
    return prepared, message


EVENTS_HTTP_LABEL = "cloudevents-http"


def decode_events_http(
    headers: dict[str, str], body: bytes, received_ns: int
) -> tuple[Decoded, PreparedBatch]:
    """Decode a ``POST /v1/events`` body (any content mode) and prepare its events."""
    decoded = decode_http(headers, body, Envelope("http", received_ns, EVENTS_HTTP_LABEL))
    batch = RecordBatch(events=decoded.events, rejections=[r for _, r in decoded.rejections])
    return decoded, prepare_batch(batch)
