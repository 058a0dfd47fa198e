"""Read-only query API served on the collector's HTTP port under /api/v1."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.receivers.taps import tap_status
from collector.store.queries import QueryError, Reader, SagaFilter

if TYPE_CHECKING:
    from collector.service import Collector


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=False, default=str, allow_nan=False, separators=(",", ":")
        ).encode()


def error(status: int, message: str) -> Response:
    return _JSON({"error": message}, status_code=status)


# Beyond this an offset is past any store and no longer fits DuckDB's 64-bit integers.
MAX_OFFSET = 2**62


def _int(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw) if str(raw).isascii() else None
    except ValueError:
        value = None
    if value is None:
        raise QueryError(f"{name} must be an integer, got {raw!r}")
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}, got {value}")
    return value


_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _flag(params: Any, name: str, default: bool = False) -> bool:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return _FLAGS[str(raw).lower()]
    except KeyError:
        raise QueryError(f"{name} must be 1 or 0 (true or false), got {raw!r}") from None


def _text(body: dict[str, Any], name: str) -> str:
    """A JSON body's text field; absent or null is empty, anything but a string is an error."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        shown = json.dumps(value, ensure_ascii=False)
        raise QueryError(f"'{name}' must be a string, got {shown[:60]}")
    return value


def parse_time_ns(raw: str | None, name: str) -> int:
    """Accept integer ns since the epoch or an ISO 8601 time."""
    if not raw:
        return 0
    if raw.isascii() and raw.isdigit():
        ns = int(raw)
    else:
        from datetime import datetime

        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(
                f"{name} must be ns since the epoch or ISO 8601, got {raw!r}"
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ns = int(dt.timestamp() * 1e9)
    if not 0 <= ns < 2**63:
        raise QueryError(f"{name} must lie between 1970 and 2262, got {raw!r}")
    return ns


def saga_filter_from_params(params: Any) -> SagaFilter:
    """Build a SagaFilter from query parameters (shared by the API and the CLI)."""

    def multi(name: str) -> tuple[str, ...]:
        values = params.getlist(name) if hasattr(params, "getlist") else [params.get(name)]
        return tuple(v for raw in values if raw for v in str(raw).split(",") if v)

    return SagaFilter(
        status=multi("status"),
        saga_type=multi("type"),
        service=params.get("service") or "",
        from_ns=parse_time_ns(params.get("from"), "from"),
        to_ns=parse_time_ns(params.get("to"), "to"),
        finding_kind=params.get("finding") or "",
        q=params.get("q") or "",
        after=params.get("after") or "",
        sort=params.get("sort") or "started",
        descending=_order(params.get("order")),
        limit=_int(params, "limit", 50, 1, 1000),
        offset=_int(params, "offset", 0, 0, MAX_OFFSET),
        now_ns=parse_time_ns(params.get("now"), "now") or time.time_ns(),
    )


def _order(raw: str | None) -> bool:
    """Whether ``order`` asks for descending order (the default)."""
    order = (raw or "desc").lower()
    if order not in ("asc", "desc"):
        raise QueryError(f"order must be asc or desc, got {raw!r}")
    return order == "desc"


def saga_page(reader: Reader, params: Any) -> dict[str, Any]:
    """One page of ``GET /api/v1/sagas``; with ``details=1`` each saga has its steps and
    findings too, so a whole period can be read a page at a time."""
    f = saga_filter_from_params(params)
    rows, total = reader.list_sagas(f)
    if _flag(params, "details"):
        rows = reader.with_details(rows)
    return {
        "sagas": rows,
        "total": total,
        "limit": f.limit,
        "offset": f.offset,
        "pages": math.ceil(total / f.limit) if total else 0,
    }


def expected_flow(config: dict[str, Any], saga_type: str) -> list[dict[str, str]] | None:
    """The steps the definitions file expects for a saga type, in order, or None."""
    definition = (config.get("sagas") or {}).get(saga_type)
    if not isinstance(definition, dict):
        return None
    steps = []
    for step in definition.get("steps") or []:
        if isinstance(step, str):
            steps.append({"name": step, "compensation": ""})
        elif isinstance(step, dict) and step.get("name"):
            steps.append(
                {"name": str(step["name"]), "compensation": str(step.get("compensation") or "")}
            )
    return steps or None


Handler = Callable[[Request], Awaitable[Response]]


def api_routes(collector: Collector) -> list[Route]:
    def guarded(fn: Callable[[Reader, Request], Any]) -> Handler:
        async def endpoint(request: Request) -> Response:
            if not collector.authorized(request.headers.get("authorization")):
                return error(401, "missing or invalid bearer token")

            def run() -> Any:
                reader = collector.reader()
                try:
                    return fn(reader, request)
                finally:
                    reader.conn.close()

            try:
                # Queries run off the event loop so ingest keeps flowing meanwhile.
                result = await asyncio.to_thread(run)
            except QueryError as exc:
                return error(400, str(exc))
            if isinstance(result, Response):
                return result
            return _JSON(result)

        return endpoint

    def sagas(reader: Reader, request: Request) -> Any:
        return saga_page(reader, request.query_params)

    def saga(reader: Reader, request: Request) -> Any:
        key = request.path_params["key"]
        records = _flag(request.query_params, "records", default=True)
        found = reader.get_saga(key, records=records)
        return found if found is not None else error(404, f"no saga with key {key!r}")

    def findings(reader: Reader, request: Request) -> Any:
        q = request.query_params
        rows, total = reader.list_findings(
            kind=q.get("kind", ""),
            saga_key=q.get("saga", ""),
            include_acknowledged=_flag(q, "all"),
            limit=_int(q, "limit", 100, 1, 1000),
            offset=_int(q, "offset", 0, 0, MAX_OFFSET),
        )
        return {"findings": rows, "total": total}

    def trace(reader: Reader, request: Request) -> Any:
        trace_id = request.path_params["trace_id"].lower()
        spans = reader.trace_spans(trace_id)
        if not spans:
            return error(404, f"no spans for trace {trace_id!r}")
        return {"trace_id": trace_id, "spans": spans, "logs": reader.trace_logs(trace_id)}

    def stats(reader: Reader, request: Request) -> Any:
        return {"counts": reader.counts(), "status": reader.status_counts()}

    def overview(reader: Reader, request: Request) -> Any:
        # The ports this collector listens on, for the dashboard's "where to send" hint.
        return {
            **reader.overview(),
            "ingest": {"grpc_port": collector.settings.grpc_port},
            "taps": tap_status(collector),
        }

    def flow(reader: Reader, request: Request) -> Any:
        saga_type = request.path_params["saga_type"]
        result = reader.flow(saga_type)
        result["expected"] = expected_flow(collector.settings.config or {}, saga_type)
        return result

    def rejections(reader: Reader, request: Request) -> Any:
        limit = _int(request.query_params, "limit", 100, 1, 1000)
        return {"rejections": reader.rejections(limit)}

    async def read_json(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise QueryError("request body must be a JSON object") from None
        if not isinstance(body, dict):
            raise QueryError("request body must be a JSON object")
        return body

    def writing(fn: Callable[[Any, int, dict[str, Any], Request], Any]) -> Handler:
        """A write that goes through the single writer and lands in the audit log."""

        async def endpoint(request: Request) -> Response:
            import time

            from collector.audit import AuditConflict, AuditError

            if not collector.authorized(request.headers.get("authorization")):
                return error(401, "missing or invalid bearer token")
            try:
                body = await read_json(request)
                at = time.time_ns()
                result = await asyncio.wrap_future(
                    collector.writer.run(lambda conn: fn(conn, at, body, request))
                )
            except AuditConflict as exc:
                return error(409, str(exc))
            except (QueryError, AuditError) as exc:
                return error(400, str(exc))
            if result is None:
                what = request.path_params.get("finding_id")
                return error(404, f"no finding with id {what!r}" if what else "not found")
            return _JSON(result)

        return endpoint

    def acknowledge(conn: Any, at: int, body: dict[str, Any], request: Request) -> Any:
        from collector.audit import acknowledge_finding

        actor = _text(body, "by").strip()
        if not actor:
            raise QueryError("'by' (who acknowledges) is required")
        return acknowledge_finding(
            conn, at, request.path_params["finding_id"], actor, _text(body, "note")
        )

    def record_action(conn: Any, at: int, body: dict[str, Any], request: Request) -> Any:
        from collector.audit import append_audit

        details = body.get("details") or {}
        if not isinstance(details, dict):
            raise QueryError("'details' must be a JSON object")
        return append_audit(
            conn, at, _text(body, "actor") or "unknown", _text(body, "action"), details
        )

    def audit(reader: Reader, request: Request) -> Any:
        from collector.audit import read_audit_log

        return read_audit_log(reader.conn)

    return [
        Route("/api/v1/findings/{finding_id}/ack", writing(acknowledge), methods=["POST"]),
        Route("/api/v1/audit", writing(record_action), methods=["POST"]),
        Route("/api/v1/audit", guarded(audit)),
        Route("/api/v1/sagas", guarded(sagas)),
        Route("/api/v1/sagas/{key:path}", guarded(saga)),
        Route("/api/v1/findings", guarded(findings)),
        Route("/api/v1/traces/{trace_id}", guarded(trace)),
        Route("/api/v1/stats", guarded(stats)),
        Route("/api/v1/overview", guarded(overview)),
        Route("/api/v1/flow/{saga_type:path}", guarded(flow)),
        Route("/api/v1/rejections", guarded(rejections)),
    ]
