"""CloudEvents over HTTP: ``POST /v1/events`` in binary, structured and batch mode.

Answers with JSON ``{"accepted", "stored", "duplicates", "rejected": [{"index", "reason"}]}``.
A single event (binary or structured) that is invalid gets 400 naming the problem; a
batch stores its good events and lists the bad ones with their index (200). Every
rejection is also recorded in the ``rejections`` table.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.decoding import EVENTS_HTTP_LABEL as LABEL
from collector.decoding import decode_events_http
from collector.normalize.cloudevents import EventDecodeError, http_mode, sample_of
from collector.normalize.records import RecordBatch, Rejection
from collector.receivers.body import BodyError, read_body
from collector.store.writer import ClosedError, OverloadedError, StoreError

if TYPE_CHECKING:
    from collector.service import Collector

PATH = "/v1/events"
# Bodies below this are decoded on the event loop; a thread hop costs more than the work.
_INLINE_DECODE_BYTES = 64 * 1024


def _json(status: int, payload: dict[str, Any], retry_after: float = 0) -> Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    return Response(
        json.dumps(payload).encode(), status, media_type="application/json", headers=headers
    )


def _error(status: int, message: str, retry_after: float = 0) -> Response:
    return _json(status, {"error": message}, retry_after)


async def _record_rejection(collector: Collector, reason: str, body: bytes) -> None:
    """Keep a whole-body rejection; a full or closing store must not turn a 400 into a 503."""
    with contextlib.suppress(StoreError):
        await collector.writer.write(
            RecordBatch(rejections=[Rejection(LABEL, reason, sample_of(body))])
        )


async def receive(collector: Collector, request: Request) -> Response:
    """Handle one ``POST /v1/events`` request."""
    if not collector.authorized(request.headers.get("authorization")):
        collector.count_request(PATH, 401)
        return _error(401, "missing or invalid bearer token")
    if collector.writer.is_full():
        collector.writer.stats.overloaded += 1
        collector.count_request(PATH, 503)
        return _error(503, "collector overloaded; retry later", retry_after=1)
    try:
        body = await read_body(
            request.stream(),
            request.headers.get("content-encoding", ""),
            collector.settings.max_body_bytes,
        )
    except BodyError as exc:
        collector.count_request(PATH, exc.status)
        if exc.status != 415:
            await _record_rejection(collector, exc.message, b"")
        return _error(exc.status, exc.message)
    headers = {k.lower(): v for k, v in request.headers.items()}
    mode = http_mode(headers)
    received_ns = time.time_ns()
    try:
        if len(body) <= _INLINE_DECODE_BYTES:
            decoded, prepared = decode_events_http(headers, body, received_ns)
        else:
            async with collector.decode_slots:
                decoded, prepared = await collector.decode(
                    decode_events_http, headers, body, received_ns
                )
    except EventDecodeError as exc:
        status = 415 if str(exc).startswith("unsupported event format") else 400
        collector.count_request(PATH, status)
        if status == 400:
            await _record_rejection(collector, str(exc), body)
        return _error(status, str(exc))
    del body
    try:
        result = await collector.writer.write(prepared)
    except OverloadedError as exc:
        collector.count_request(PATH, 503)
        return _error(503, str(exc), retry_after=exc.retry_after)
    except ClosedError as exc:
        collector.count_request(PATH, 503)
        return _error(503, str(exc), retry_after=5)
    except StoreError as exc:
        collector.count_request(PATH, 500)
        return _error(500, str(exc))
    rejected: list[dict[str, Any]] = [
        {"index": i, "reason": r.reason} for i, r in decoded.rejections
    ]
    # Events the store could not hold (a value out of range, text that is not Unicode).
    unstorable = [reason for _, reason, _ in prepared.rejections[len(decoded.rejections) :]]
    rejected += [{"index": None, "reason": reason} for reason in unstorable]
    payload: dict[str, Any] = {
        "accepted": len(decoded.events) - len(unstorable),
        "stored": result.stored,
        "duplicates": result.duplicates,
        "rejected": rejected,
    }
    if mode != "batch" and rejected:
        payload["error"] = rejected[0]["reason"]
        collector.count_request(PATH, 400)
        return _json(400, payload)
    collector.count_request(PATH, 200)
    return _json(200, payload)


def routes(collector: Collector) -> list[Route]:
    """The CloudEvents route for the collector's HTTP app."""

    async def events(request: Request) -> Response:
        return await receive(collector, request)

    return [Route(PATH, events, methods=["POST"])]
