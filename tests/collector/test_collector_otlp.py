"""OTLP ingest against a really started collector, over its real ports."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import signal
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import RunningCollector, running_collector, wait_for

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"


def _span_json(
    trace_id: str = TRACE_ID,
    span_id: str = SPAN_ID,
    name: str = "reserve_inventory",
    **extra: object,
) -> dict[str, object]:
    span: dict[str, object] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": 1700000000500000000,
        "attributes": [
            {"key": "saga.id", "value": {"stringValue": "order-1"}},
            {"key": "retries", "value": {"intValue": "3"}},
            {"key": "ok", "value": {"boolValue": True}},
            {"key": "amount", "value": {"doubleValue": 12.5}},
            {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}]}}},
        ],
        "status": {"code": 2, "message": "boom"},
        "someFutureField": {"ignored": True},
    }
    span.update(extra)
    return span


def _traces_json(*spans: dict[str, object], service: str = "inventory") -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


def _post(
    c: RunningCollector,
    body: bytes,
    content_type: str = "application/json",
    path: str = "/v1/traces",
    **headers: str,
) -> httpx.Response:
    return httpx.post(
        c.url + path,
        content=body,
        headers={"Content-Type": content_type, **c.headers(), **headers},
        timeout=30,
    )


def _spans(c: RunningCollector, trace_id: str) -> list[dict[str, object]]:
    r = httpx.get(f"{c.url}/api/v1/traces/{trace_id}", headers=c.headers(), timeout=10)
    return list(r.json()["spans"]) if r.status_code == 200 else []


def _tracer_provider(exporter: object, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    return provider


def _emit_saga(provider: TracerProvider) -> str:
    tracer = provider.get_tracer("orders", "1.0")
    with tracer.start_as_current_span(
        "checkout", kind=SpanKind.SERVER, attributes={"saga.id": "order-7"}
    ) as root:
        with tracer.start_as_current_span(
            "charge_payment",
            kind=SpanKind.CLIENT,
            attributes={
                "saga.id": "order-7",
                "saga.step": "charge_payment",
                "amount": 9.99,
                "attempt": 2,
                "card.present": False,
                "codes": ["a", "b"],
            },
        ) as span:
            span.add_event(
                "exception",
                {"exception.type": "Declined", "exception.message": "insufficient funds"},
            )
            span.set_status(Status(StatusCode.ERROR, "declined"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_official_sdk_span_exporter_stores_every_span_once_with_attributes(
    collector: RunningCollector, transport: str
) -> None:
    exporter = (
        HttpSpanExporter(endpoint=collector.url + "/v1/traces")
        if transport == "http"
        else GrpcSpanExporter(endpoint=collector.grpc, insecure=True)
    )
    trace_id = _emit_saga(_tracer_provider(exporter, f"payments-{transport}"))

    spans = wait_for(lambda: len(_spans(collector, trace_id)) == 2 and _spans(collector, trace_id))
    by_name = {s["name"]: s for s in spans}
    charge = by_name["charge_payment"]
    assert charge["attributes"] == {
        "saga.id": "order-7",
        "saga.step": "charge_payment",
        "amount": 9.99,
        "attempt": 2,
        "card.present": False,
        "codes": ["a", "b"],
    }
    assert charge["service_name"] == f"payments-{transport}"
    assert charge["status_code"] == 2 and charge["status_message"] == "declined"
    assert charge["events"][0]["name"] == "exception"
    assert charge["events"][0]["attributes"]["exception.message"] == "insufficient funds"
    assert charge["parent_span_id"] == by_name["checkout"]["span_id"]
    assert charge["kind"] == 3  # CLIENT
    assert charge["scope_name"] == "orders" and charge["scope_version"] == "1.0"
    assert collector.counts()["spans"] == 2


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_official_sdk_log_exporter_stores_log_records(
    collector: RunningCollector, transport: str
) -> None:
    exporter = (
        HttpLogExporter(endpoint=collector.url + "/v1/logs")
        if transport == "http"
        else GrpcLogExporter(endpoint=collector.grpc, insecure=True)
    )
    provider = LoggerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("orders")
    logger.emit(
        body="order placed",
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        attributes={"order.id": "42", "items": 3},
        event_name="order.placed",
    )
    provider.shutdown()

    wait_for(lambda: collector.counts()["logs"] == 1)
    collector.stop()
    with duckdb.connect(str(collector.db), read_only=True) as conn:
        row = conn.execute(
            "SELECT body, attributes, severity_text, event_name, service_name FROM logs"
        ).fetchone()
    assert row is not None
    assert json.loads(row[0]) == "order placed"
    assert json.loads(row[1]) == {"order.id": "42", "items": 3}
    assert row[2:] == ("INFO", "order.placed", "orders")


def test_json_rules_and_partial_success(collector: RunningCollector) -> None:
    b64_trace = base64.b64encode(bytes.fromhex("0af7651916cd43dd8448eb211c80319c")).decode()
    b64_span = base64.b64encode(bytes.fromhex("b7ad6b7169203331")).decode()
    body = _traces_json(
        _span_json(),
        _span_json(trace_id=b64_trace, span_id=b64_span, name="base64 ids"),
        _span_json(trace_id="0" * 32, span_id="1" * 16, name="zero trace"),
        _span_json(span_id="abc", name="short span id"),
    )
    r = _post(collector, body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "trace_id" in partial["errorMessage"] and "span_id" in partial["errorMessage"]

    stored = _spans(collector, TRACE_ID)
    assert len(stored) == 1
    assert stored[0]["attributes"] == {
        "saga.id": "order-1",
        "retries": 3,
        "ok": True,
        "amount": 12.5,
        "tags": ["a"],
    }
    assert stored[0]["start_ns"] == 1700000000000000000
    assert [s["name"] for s in _spans(collector, "0af7651916cd43dd8448eb211c80319c")] == [
        "base64 ids"
    ]
    rejections = collector.get("/api/v1/rejections")["rejections"]
    assert len(rejections) == 2


def test_values_no_column_can_hold_cost_their_own_item_only(
    collector: RunningCollector,
) -> None:
    trace = "7" * 32
    body = _traces_json(
        _span_json(trace_id=trace, span_id="1" * 16, name="good"),
        # Beyond 64 bits: no int64 time column holds it.
        _span_json(trace_id=trace, span_id="2" * 16, startTimeUnixNano="99999999999999999999"),
        # A JSON escape for half a surrogate pair: valid JSON, not Unicode text.
        _span_json(trace_id=trace, span_id="3" * 16, name="\ud800 half"),
    )
    r = _post(collector, body)
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "2"
    assert "start_ns 99999999999999999999 is out of range" in partial["errorMessage"]
    assert "name holds an unpaired surrogate" in partial["errorMessage"]
    assert [s["name"] for s in _spans(collector, trace)] == ["good"]

    # A valid fixed64 that is still beyond int64, over protobuf.
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for n, start in ((4, 1), (5, 2**64 - 1)):
        span = spans.add(trace_id=bytes.fromhex(trace), span_id=bytes([n]) * 8, name=f"pb-{n}")
        span.start_time_unix_nano = start
    r = _post(collector, request.SerializeToString(), "application/x-protobuf")
    assert r.status_code == 200
    answer = ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 1
    assert sorted(s["name"] for s in _spans(collector, trace)) == ["good", "pb-4"]
    reasons = [x["reason"] for x in collector.get("/api/v1/rejections")["rejections"]]
    assert sum("out of range" in reason for reason in reasons) == 2


def test_gzip_and_chunked_bodies(collector: RunningCollector) -> None:
    body = _traces_json(_span_json())
    assert _post(collector, gzip.compress(body), **{"Content-Encoding": "gzip"}).status_code == 200

    other = _traces_json(_span_json(trace_id="1" * 32, span_id="2" * 16))

    def chunks():  # no Content-Length: sent chunked, like the JavaScript exporter
        for i in range(0, len(other), 7):
            yield other[i : i + 7]

    r = httpx.post(
        collector.url + "/v1/traces", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert len(_spans(collector, TRACE_ID)) == 1
    assert len(_spans(collector, "1" * 32)) == 1


def test_protobuf_request_gets_protobuf_response(collector: RunningCollector) -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(TRACE_ID)
    span.span_id = bytes(8)  # all-zero: rejected
    span.name = "bad"
    r = _post(collector, request.SerializeToString(), "application/x-protobuf")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    response = ExportTraceServiceResponse.FromString(r.content)
    assert response.partial_success.rejected_spans == 1
    assert "span_id" in response.partial_success.error_message


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "message"),
    [
        (b"\x0a\xff\xff\xff", "application/x-protobuf", {}, 400, "malformed OTLP traces"),
        (b'{"resourceSpans": [', "application/json", {}, 400, "malformed OTLP traces"),
        (b'{"resourceSpans": 5}', "application/json", {}, 400, "resourceSpans"),
        (b"hello", "text/plain", {}, 415, "unsupported Content-Type"),
        (
            gzip.compress(b"\0" * (3 * 1024 * 1024)),
            "application/x-protobuf",
            {"Content-Encoding": "gzip"},
            413,
            "exceeds the limit",
        ),
        (
            b"\x1f\x8b\x08garbage",
            "application/json",
            {"Content-Encoding": "gzip"},
            400,
            "invalid gzip",
        ),
        (b"{}", "application/json", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
    ],
)
def test_bad_input_gets_clear_status_and_keeps_accepted_data(
    tmp_path: Path,
    body: bytes,
    content_type: str,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    with running_collector(tmp_path, "--max-body", str(2 * 1024 * 1024)) as c:
        assert _post(c, _traces_json(_span_json())).status_code == 200
        r = _post(c, body, content_type, **headers)
        assert r.status_code == status, r.text
        if content_type != "application/json":  # OTLP's default encoding is protobuf
            error = status_pb2.Status.FromString(r.content)
            assert message in error.message
        else:
            assert message in r.json()["message"]
        assert len(_spans(c, TRACE_ID)) == 1


def test_huge_attribute_value_within_limit_is_stored_intact(collector: RunningCollector) -> None:
    big = "x" * (1024 * 1024)
    span = _span_json(attributes=[{"key": "payload", "value": {"stringValue": big}}])
    assert _post(collector, _traces_json(span)).status_code == 200
    assert _spans(collector, TRACE_ID)[0]["attributes"]["payload"] == big


def test_empty_request_is_ok(collector: RunningCollector) -> None:
    assert _post(collector, b"", "application/x-protobuf").status_code == 200
    assert _post(collector, b"{}").status_code == 200
    assert collector.counts()["spans"] == 0


def test_same_request_twice_stores_one_copy(collector: RunningCollector) -> None:
    body = _traces_json(_span_json(), _span_json(span_id="1" * 16))
    for _ in range(3):
        assert _post(collector, body).status_code == 200
    assert collector.counts()["spans"] == 2
    metrics = httpx.get(collector.url + "/metrics").text
    assert "sagalens_records_duplicates_total 4.0" in metrics
    assert "sagalens_records_stored_total 2.0" in metrics


def test_token_is_required_on_ingest_api_and_grpc(tmp_path: Path) -> None:
    with running_collector(tmp_path, token="s3cret") as c:
        body = _traces_json(_span_json())
        r = httpx.post(
            c.url + "/v1/traces",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer no"},
        )
        assert r.status_code == 401 and "token" in r.json()["message"]
        assert httpx.get(c.url + "/api/v1/sagas").status_code == 401
        assert _post(c, body).status_code == 200  # with the right token
        assert len(_spans(c, TRACE_ID)) == 1

        exporter = GrpcSpanExporter(endpoint=c.grpc, insecure=True)
        with grpc.insecure_channel(c.grpc) as channel:
            call = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            )
            with pytest.raises(grpc.RpcError) as err:
                call(ExportTraceServiceRequest().SerializeToString())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        exporter.shutdown()


def test_grpc_malformed_and_oversized_messages(tmp_path: Path) -> None:
    with (
        running_collector(tmp_path, "--max-body", str(1024 * 1024)) as c,
        grpc.insecure_channel(c.grpc) as channel,
    ):
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\x0a\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed" in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as err:
            call(b"\x0a" + b"\x00" * (2 * 1024 * 1024))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_overload_answers_503_with_retry_after_and_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    with running_collector(tmp_path, "--max-queue-rows", "100") as c:

        def send(i: int) -> tuple[int, str, str]:
            trace = f"{i + 1:032x}"
            spans = [_span_json(trace_id=trace, span_id=f"{j + 1:016x}") for j in range(80)]
            r = _post(c, _traces_json(*spans))
            return r.status_code, r.headers.get("retry-after", ""), trace

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(send, range(64)))
        statuses = {s for s, _, _ in results}
        assert statuses <= {200, 503}
        assert 503 in statuses, "expected the bounded queue to refuse some requests"
        assert all(ra == "1" for s, ra, _ in results if s == 503)
        acked = [t for s, _, t in results if s == 200]
        assert acked
        for trace in acked:
            assert len(_spans(c, trace)) == 80


def test_sigterm_commits_accepted_data_and_closes_the_file(tmp_path: Path) -> None:
    with running_collector(tmp_path) as c:
        assert _post(c, _traces_json(_span_json())).status_code == 200
        c.proc.send_signal(signal.SIGTERM)
        assert c.proc.wait(timeout=30) == 0
        with duckdb.connect(str(c.db), read_only=True) as conn:
            row = conn.execute("SELECT count(*) FROM spans").fetchone()
        assert row == (1,)
        # The last words are the collector's own: no library complains as the process exits.
        said = c.log.read_text()
        assert said.rstrip().endswith("sagalens collector: stopped, store closed"), said


def test_acknowledged_spans_survive_a_killed_collector_and_retries_stay_single(
    tmp_path: Path,
) -> None:
    # Acknowledged rows sit in the write-ahead log until a checkpoint: SIGKILL gives the
    # collector no chance to checkpoint, so the restart must replay them.
    db = tmp_path / "store.duckdb"
    bodies = [
        _traces_json(
            *(_span_json(trace_id=f"{i + 1:032x}", span_id=f"{j + 1:016x}") for j in range(50))
        )
        for i in range(20)
    ]
    with running_collector(tmp_path, db=db) as c:
        assert all(_post(c, body).status_code == 200 for body in bodies)
        c.proc.kill()
        c.proc.wait(timeout=30)
    with running_collector(tmp_path, db=db) as c:
        assert c.counts()["spans"] == 1000
        # An exporter that never saw its answer sends the request again, alongside new spans.
        retry = json.loads(bodies[3])
        retry["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
            _span_json(trace_id=f"{4:032x}", span_id=f"{51:016x}")
        )
        r = _post(c, json.dumps(retry).encode())
        assert r.status_code == 200
        assert c.counts()["spans"] == 1001
        assert len(_spans(c, f"{4:032x}")) == 51
        metrics = httpx.get(c.url + "/metrics", timeout=10).text
        assert "sagalens_records_duplicates_total 50.0" in metrics, metrics


def test_health_and_metrics(collector: RunningCollector) -> None:
    span = _span_json(trace_id=f"{77:032x}", span_id=f"{77:016x}")
    assert _post(collector, _traces_json(span)).status_code == 200
    health = httpx.get(collector.url + "/healthz").json()
    assert health["status"] == "ok" and health["schema_version"] >= 1
    metrics = httpx.get(collector.url + "/metrics")
    assert metrics.status_code == 200
    for name in (
        "sagalens_records_received_total",
        "sagalens_records_rejected_total",
        "sagalens_queue_rows",
        "sagalens_commit_seconds_total",
        "sagalens_checkpoints_total",
    ):
        assert name in metrics.text
    # The commit latency histogram counts every commit of records, each in one bucket.
    values = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in metrics.text.splitlines()
        if line and not line.startswith("#")
    }
    commits = values["sagalens_commits_total"]
    assert commits >= 1
    assert values['sagalens_commit_duration_seconds_bucket{le="+Inf"}'] == commits
    assert values["sagalens_commit_duration_seconds_count"] == commits
    assert values['sagalens_commit_duration_seconds_bucket{le="0.005"}'] <= commits


def test_a_second_collector_on_a_taken_grpc_port_refuses_to_start(
    collector: RunningCollector, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.conftest import free_port

    taken = collector.grpc.rsplit(":", 1)[1]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector",
            "collector",
            "--db",
            str(tmp_path / "second.duckdb"),
            "--http-port",
            str(free_port()),
            "--grpc-port",
            taken,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"could not start OTLP/gRPC on 127.0.0.1:{taken}" in done.stderr
    assert "Traceback" not in done.stderr
