"""OTLP/HTTP receiver: POST /v1/traces and /v1/logs, protobuf or JSON, gzip or not."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response

from collector.decoding import DECODERS, decode_prepared
from collector.normalize import otlp
from collector.receivers.body import BodyError, read_body
from collector.store.writer import ClosedError, OverloadedError, StoreError

if TYPE_CHECKING:
    from collector.service import Collector

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values used in Status bodies
_CODE_FOR_HTTP = {400: 3, 401: 16, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def status_response(
    http_status: int, message: str, as_json: bool, retry_after: float = 0
) -> Response:
    """An error answer with a google.rpc.Status body in the request's encoding."""
    code = _CODE_FOR_HTTP.get(http_status, 2)
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    if as_json:
        body = json.dumps({"code": code, "message": message}).encode()
        return Response(body, http_status, media_type=JSON, headers=headers)
    status = status_pb2.Status(code=code, message=message)
    return Response(status.SerializeToString(), http_status, media_type=PROTOBUF, headers=headers)


def _success(kind: str, rejected: int, message: str, as_json: bool) -> Response:
    if kind == "traces":
        resp: ExportTraceServiceResponse | ExportLogsServiceResponse = ExportTraceServiceResponse()
        field = "rejected_spans"
    else:
        resp = ExportLogsServiceResponse()
        field = "rejected_log_records"
    if rejected:
        setattr(resp.partial_success, field, rejected)
        resp.partial_success.error_message = message
    if as_json:
        payload: dict[str, object] = {}
        if rejected:
            camel = "rejectedSpans" if kind == "traces" else "rejectedLogRecords"
            payload["partialSuccess"] = {camel: str(rejected), "errorMessage": message}
        return Response(json.dumps(payload).encode(), 200, media_type=JSON)
    return Response(resp.SerializeToString(), 200, media_type=PROTOBUF)


async def export(collector: Collector, request: Request, kind: str) -> Response:
    """Handle one OTLP/HTTP export request for ``kind`` ("traces" or "logs")."""
    mt = media_type(request)
    as_json = mt == JSON
    path = f"/v1/{kind}"
    if not collector.authorized(request.headers.get("authorization")):
        collector.count_request(path, 401)
        return status_response(401, "missing or invalid bearer token", as_json)
    if mt not in (PROTOBUF, JSON):
        collector.count_request(path, 415)
        return status_response(
            415, f"unsupported Content-Type {mt or '(none)'!r}; use {PROTOBUF} or {JSON}", as_json
        )
    # Refuse before reading the body: under overload memory must not grow with requests.
    if collector.writer.is_full():
        collector.writer.stats.overloaded += 1
        collector.count_request(path, 503)
        return status_response(503, "collector overloaded; retry later", as_json, retry_after=1)
    try:
        body = await read_body(
            request.stream(),
            request.headers.get("content-encoding", ""),
            collector.settings.max_body_bytes,
        )
    except BodyError as exc:
        collector.count_request(path, exc.status)
        return status_response(exc.status, exc.message, as_json)
    if not body:
        collector.count_request(path, 200)
        return _success(kind, 0, "", as_json)
    async with collector.decode_slots:
        try:
            prepared, message = await collector.decode(
                decode_prepared, DECODERS[(kind, as_json)], body
            )
        except otlp.DecodeError as exc:
            collector.count_request(path, 400)
            return status_response(400, f"malformed OTLP {kind} request: {exc}", as_json)
    del body
    try:
        result = await collector.writer.write(prepared)
    except OverloadedError as exc:
        collector.count_request(path, 503)
        return status_response(503, str(exc), as_json, retry_after=exc.retry_after)
    except ClosedError as exc:
        collector.count_request(path, 503)
        return status_response(503, str(exc), as_json, retry_after=5)
    except StoreError as exc:
        collector.count_request(path, 500)
        return status_response(500, str(exc), as_json)
    collector.count_request(path, 200)
    return _success(kind, result.rejected, message, as_json)
