"""Pure CloudEvents / broker message decoders: tables of inputs and the records they become."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.v1.event import CloudEvent

from collector.normalize.cloudevents import (
    Envelope,
    EventDecodeError,
    decode_amqp,
    decode_http,
    decode_nats,
    http_mode,
    json_path,
    parse_time,
    parse_traceparent,
)
from collector.receivers.taps import TapConfigError, parse_tap, tap_from_url

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TP = f"00-{TRACE}-{SPAN}-01"
BASE = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "OrderPlaced"}


def _env() -> Envelope:
    return Envelope("http", 42, "cloudevents-http")


def _sdk_event(**extra: Any) -> CloudEvent:
    attrs = {
        "id": "e-1",
        "source": "/orders",
        "type": "OrderPlaced",
        "time": datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC),
        "datacontenttype": "application/json",
        **extra,
    }
    return CloudEvent(attrs, {"orderId": 1})


@pytest.mark.parametrize(
    ("headers", "mode"),
    [
        ({"content-type": "application/cloudevents+json; charset=utf-8"}, "structured"),
        ({"content-type": "application/cloudevents-batch+json"}, "batch"),
        ({"content-type": "application/json", "ce-id": "1"}, "binary"),
        ({}, "binary"),
    ],
)
def test_http_mode(headers: dict[str, str], mode: str) -> None:
    assert http_mode(headers) == mode


def test_http_binary_and_structured_from_the_sdk_agree() -> None:
    event = _sdk_event(traceparent=TP, correlationid="order-1", causationid="c-0", tenant="acme")
    binary = ce_http.to_binary_event(event)
    structured = ce_http.to_structured_event(event)
    records = []
    for wire in (binary, structured):
        decoded = decode_http({k.lower(): v for k, v in wire.headers.items()}, wire.body, _env())
        assert not decoded.rejections
        records.append(decoded.events[0])
    for r in records:
        assert (r.id, r.source, r.type, r.transport, r.received_ns) == (
            "e-1",
            "/orders",
            "OrderPlaced",
            "http",
            42,
        )
        assert r.data == {"orderId": 1}
        assert r.time_ns == 1_767_225_601_500_000_000
        assert (r.trace_id, r.parent_span_id) == (TRACE, SPAN)
        assert r.extensions == {
            "traceparent": TP,
            "correlationid": "order-1",
            "causationid": "c-0",
            "tenant": "acme",
        }
    assert records[0].event_key == records[1].event_key  # dedup on source + id


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (
            {"ce-id": "1"},
            b"{}",
            "missing required CloudEvents attributes: source, specversion, type",
        ),
        ({"content-type": "application/json"}, b"{}", "not a CloudEvent: no ce-id"),
        (
            {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "0.3"},
            b"",
            "unsupported specversion '0.3'",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-specversion": "1.0",
                "content-type": "application/json",
            },
            b"{oops",
            "data is not valid JSON",
        ),
        (
            {
                "ce-id": "1",
                "ce-source": "/s",
                "ce-type": "t",
                "ce-specversion": "1.0",
                "ce-time": "yesterday",
            },
            b"",
            "attribute 'time' is not an RFC 3339 timestamp",
        ),
        (
            {"ce-id": "", "ce-source": "/s", "ce-type": "t", "ce-specversion": "1.0"},
            b"",
            "attribute 'id' must not be empty",
        ),
    ],
)
def test_http_binary_rejections(headers: dict[str, str], body: bytes, reason: str) -> None:
    decoded = decode_http(headers, body, _env())
    assert not decoded.events
    [(index, rejection)] = decoded.rejections
    assert index == 0 and reason in rejection.reason
    assert rejection.source == "cloudevents-http"


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b"hello", "hello"),
        (b"\xff\x00", {"bytes": "/wA="}),
        (b"", None),
    ],
)
def test_http_binary_non_json_data(body: bytes, data: Any) -> None:
    headers = {
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-specversion": "1.0",
        "content-type": "application/octet-stream",
    }
    [event] = decode_http(headers, body, _env()).events
    assert event.data == data


def test_http_binary_percent_decoding_and_header_hygiene() -> None:
    headers = {
        "ce-id": "1",
        "ce-source": "/s",
        "ce-type": "t",
        "ce-specversion": "1.0",
        "ce-note": "caf%C3%A9 %22x%22",
        "authorization": "Bearer secret",
        "traceparent": TP,
        "x-tenant": "acme",
    }
    [event] = decode_http(headers, b"", _env()).events
    assert event.extensions == {"note": 'café "x"'}
    assert event.headers == {"traceparent": TP, "x-tenant": "acme"}
    assert event.trace_id == TRACE  # from the request's traceparent header


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({**BASE, "specversion": "0.3"}, "unsupported specversion"),
        ({"id": "1"}, "missing required CloudEvents attributes: source, specversion, type"),
        ({**BASE, "id": 7}, "attribute 'id' must be a string, got int"),
        ({**BASE, "data_base64": "!!!"}, "'data_base64' is not valid base64"),
        ({**BASE, "data": 1, "data_base64": "AA=="}, "both 'data' and 'data_base64'"),
        ({**BASE, "time": "2026-13-01T00:00:00Z"}, "attribute 'time' is not a valid timestamp"),
        ("text", "must be a JSON object, got string"),
    ],
)
def test_batch_keeps_good_events_and_indexes_bad_ones(item: Any, reason: str) -> None:
    body = json.dumps([BASE, item, {**BASE, "id": "e-2", "data_base64": "AAE="}]).encode()
    decoded = decode_http({"content-type": "application/cloudevents-batch+json"}, body, _env())
    assert [e.id for e in decoded.events] == ["e-1", "e-2"]
    assert decoded.events[1].data == {"bytes": "AAE="}
    [(index, rejection)] = decoded.rejections
    assert index == 1 and rejection.reason.startswith("event 1: ") and reason in rejection.reason


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/cloudevents-batch+json", b"not json", "batch body is not valid JSON"),
        ("application/cloudevents-batch+json", b"{}", "must be a JSON array of events, got object"),
        ("application/cloudevents+json", b"\xff", "not UTF-8"),
        ("application/cloudevents+xml", b"<x/>", "unsupported event format"),
    ],
)
def test_http_whole_body_errors(content_type: str, body: bytes, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        decode_http({"content-type": content_type}, body, _env())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:00Z", 1_767_225_600_000_000_000),
        ("2026-01-01T00:00:00.123456789Z", 1_767_225_600_123_456_789),
        ("2026-01-01T01:00:00.5+01:00", 1_767_225_600_500_000_000),
        (1_767_225_600_000, 1_767_225_600_000_000_000),  # AMQP timestamp, ms
    ],
)
def test_parse_time(value: Any, expected: int) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TP, (TRACE, SPAN)),
        (TP.upper(), (TRACE, SPAN)),
        (f"00-{'0' * 32}-{SPAN}-01", ("", "")),
        ("garbage", ("", "")),
        (None, ("", "")),
    ],
)
def test_parse_traceparent(value: Any, expected: tuple[str, str]) -> None:
    assert parse_traceparent(value) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [("data.eventType", "X"), ("data.items.1", 2), ("data.missing", None), ("type", None)],
)
def test_json_path(path: str, expected: Any) -> None:
    assert json_path({"data": {"eventType": "X", "items": [1, 2]}}, path) == expected


def _amqp(body: bytes, props: dict[str, Any], content_type: str = "", **kw: Any) -> Any:
    return decode_amqp(
        body,
        props,
        content_type,
        exchange="orders",
        routing_key="orders.placed",
        received_ns=1,
        **kw,
    )


def test_amqp_binary_structured_and_rabbitmq_sdk_bindings() -> None:
    event = _sdk_event(traceparent=TP)
    amqp_binary = ce_amqp.to_binary_event(event)
    amqp_structured = ce_amqp.to_structured_event(event)
    rabbit_binary = ce_rabbitmq.to_binary_event(event)
    cases = [
        _amqp(
            amqp_binary.application_data,
            amqp_binary.application_properties,
            str(amqp_binary.properties.get("content-type", "")),
        ),
        _amqp(
            amqp_structured.application_data,
            {},
            str(amqp_structured.properties.get("content-type", "")),
        ),
        _amqp(rabbit_binary.body, rabbit_binary.headers, rabbit_binary.content_type or ""),
    ]
    for decoded in cases:
        assert not decoded.rejections, decoded.rejections
        [record] = decoded.events
        assert (record.id, record.type, record.transport, record.trace_id) == (
            "e-1",
            "OrderPlaced",
            "amqp",
            TRACE,
        )
        assert record.destination == "orders/orders.placed"
        assert record.destination_details == {"exchange": "orders", "routing_key": "orders.placed"}
        assert record.time_ns == 1_767_225_601_500_000_000
        assert record.data == {"orderId": 1}


@pytest.mark.parametrize(
    ("body", "props", "kw", "expected"),
    [
        # message id wins; routing key is the type
        (b'{"a": 1}', {}, {"message_id": "m-1"}, ("m-1", "orders.placed", "amqp://orders")),
        # no message id: content hash
        (b'{"a": 1}', {}, {}, ("sha256:", "orders.placed", "amqp://orders")),
        # configured JSON field for the type
        (
            b'{"data": {"eventType": "Paid"}}',
            {},
            {"type_field": "data.eventType", "message_id": "m"},
            ("m", "Paid", "amqp://orders"),
        ),
        # field missing: fall back to the routing key
        (
            b'{"x": 1}',
            {},
            {"type_field": "data.eventType", "message_id": "m"},
            ("m", "orders.placed", "amqp://orders"),
        ),
    ],
)
def test_amqp_plain_json(
    body: bytes, props: dict[str, Any], kw: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    [event] = _amqp(body, props, **kw).events
    assert event.id.startswith(expected[0]) and (event.type, event.source) == expected[1:]
    assert event.transport == "amqp" and event.data == json.loads(body)


def test_plain_json_content_hash_is_stable_and_trace_header_is_used() -> None:
    a = _amqp(b'{"a": 1}', {"traceparent": TP}).events[0]
    b = _amqp(b'{"a": 1}', {}).events[0]
    assert a.event_key == b.event_key
    assert (a.trace_id, a.parent_span_id) == (TRACE, SPAN) and a.headers == {"traceparent": TP}


@pytest.mark.parametrize(
    ("body", "props", "ct", "kw", "reason"),
    [
        (b"\x00\x01", {}, "", {}, "message body is not valid JSON"),
        (
            b"x" * 101,
            {},
            "",
            {"max_bytes": 100},
            "message of 101 bytes exceeds the limit of 100 bytes",
        ),
        (b"{}", {"cloudEvents:id": "1"}, "", {}, "missing required CloudEvents attributes"),
        (
            b'{"id": "1", "source": "/s", "type": "t"}',
            {},
            "application/cloudevents+json",
            {},
            "missing required CloudEvents attribute: specversion",
        ),
        (
            b'{"specversion": "2.0", "id": "1", "source": "/s", "type": "t"}',
            {},
            "",
            {},
            "unsupported specversion '2.0'",
        ),
    ],
)
def test_amqp_poison_messages(
    body: bytes, props: dict[str, Any], ct: str, kw: dict[str, Any], reason: str
) -> None:
    decoded = _amqp(body, props, ct, **kw)
    assert not decoded.events
    [(_, rejection)] = decoded.rejections
    assert reason in rejection.reason and rejection.source == "amqp:orders"
    assert rejection.sample


def test_nats_binary_structured_and_plain() -> None:
    headers = {
        "ce-id": "n-1",
        "ce-source": "/s",
        "ce-type": "T",
        "ce-specversion": "1.0",
        "ce-traceparent": TP,
        "content-type": "application/json",
        "Nats-Msg-Id": "n-1",
    }
    [binary] = decode_nats(
        b'{"k": 1}', headers, subject="orders.x", stream="ORDERS", sequence=9
    ).events
    assert (binary.id, binary.trace_id, binary.data, binary.message_id) == (
        "n-1",
        TRACE,
        {"k": 1},
        "n-1",
    )
    assert binary.destination_details == {"subject": "orders.x", "stream": "ORDERS", "sequence": 9}
    [structured] = decode_nats(json.dumps(BASE).encode(), None, subject="orders.x").events
    assert (structured.id, structured.transport) == ("e-1", "nats")
    [plain] = decode_nats(
        b'{"k": 1}', {"Nats-Msg-Id": "p-1"}, subject="orders.y", stream="ORDERS"
    ).events
    assert (plain.id, plain.type, plain.source) == ("p-1", "orders.y", "nats://ORDERS")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "sqs"}, "'kind' must be one of rabbitmq, nats, kafka"),
        ({"kind": "rabbitmq"}, "'exchange' is required"),
        ({"kind": "rabbitmq", "exchange": "o", "url": "http://x"}, "amqp:// or amqps://"),
        (
            {"kind": "rabbitmq", "exchange": "o", "durable": "maybe"},
            "'durable' must be true or false",
        ),
        ({"kind": "rabbitmq", "exchange": "o", "colour": "red"}, "unknown key(s) colour"),
        ({"kind": "nats"}, "'subjects' is required"),
        ({"kind": "nats", "subjects": ["a"], "create_stream": True}, "needs a 'stream' name"),
        ({"kind": "nats", "subjects": ["a"], "durable": "a.b"}, "'durable' must be a name"),
        ({"kind": "kafka", "topics": ["t"]}, "'bootstrap' is required"),
        ({"kind": "kafka", "bootstrap": "h:9092"}, "'topics' is required"),
        (
            {"kind": "kafka", "bootstrap": "h:9092", "topics": ["t"], "batch_size": 0},
            "'batch_size'",
        ),
        ("nope", "expected a mapping"),
        ({"kind": "rabbitmq", "exchange": "o", "url": "amqp://h:x/"}, "is not a valid URL"),
        ({"kind": "nats", "subjects": ["a"], "url": "nats://h:70000"}, "is not a valid URL"),
        ({"kind": "nats", "subjects": ["a"], "url": "nats://"}, "'url' names no host"),
        ({"kind": "rabbitmq", "exchange": "o", "batch_size": "inf"}, "must be a finite number"),
        ({"kind": "nats", "subjects": ["a"], "ack_wait": "nan"}, "must be a finite number"),
    ],
)
def test_tap_config_errors(entry: Any, message: str) -> None:
    with pytest.raises(TapConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_tap(entry)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "amqp://guest:guest@127.0.0.1:5672/?exchange=orders&binding=#&binding=audit.*&durable=false",
            {
                "kind": "rabbitmq",
                "url": "amqp://guest:guest@127.0.0.1:5672/",
                "exchange": "orders",
                "bindings": ["#", "audit.*"],
                "durable": "false",
            },
        ),
        (
            "nats://127.0.0.1:4222?subject=orders.>&stream=ORDERS",
            {
                "kind": "nats",
                "url": "nats://127.0.0.1:4222",
                "subjects": ["orders.>"],
                "stream": "ORDERS",
            },
        ),
        (
            "kafka://a:9092,b:9092?topics=orders,payments&group=g",
            {
                "kind": "kafka",
                "bootstrap": "a:9092,b:9092",
                "topics": ["orders", "payments"],
                "group": "g",
            },
        ),
    ],
)
def test_tap_urls(url: str, expected: dict[str, Any]) -> None:
    assert tap_from_url(url) == expected


def test_tap_url_errors_name_the_url() -> None:
    with pytest.raises(TapConfigError, match=r"--tap 'amqp://h/'.*'exchange' is required"):
        tap_from_url("amqp://h/")
    with pytest.raises(TapConfigError, match="scheme must be"):
        tap_from_url("redis://h")
    with pytest.raises(TapConfigError, match=r"--tap 'amqp://u:\*\*\*@\[::1/'.*not a valid URL"):
        tap_from_url("amqp://u:secret@[::1/")


@pytest.mark.parametrize(
    ("tap", "message"),
    [
        ("amqp://guest:secret@127.0.0.1:notaport/?exchange=o", "is not a valid URL"),
        ("amqp://127.0.0.1/?exchange=o&batch_size=inf", "'batch_size' must be a finite number"),
        ("amqp://127.0.0.1/?exchange=o&batch_ms=nan", "'batch_ms' must be a finite number"),
        ("amqp://u:secret@[::1/?exchange=o", "not a valid URL"),
        ("nats://?subject=a", "'url' names no host"),
        ("nats://127.0.0.1:4222", "'subjects' is required"),
        ("redis://127.0.0.1", "scheme must be"),
    ],
)
def test_bad_tap_stops_the_collector_with_one_line(tmp_path: Path, tap: str, message: str) -> None:
    """A bad --tap is a one-line error at start, never a traceback or a tap that keeps failing."""
    command = ["collector", "--db", str(tmp_path / "s.duckdb"), "--tap", tap]
    done = subprocess.run(
        [sys.executable, "-m", "collector", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --tap "), done.stderr
    assert message in lines[0] and "secret" not in lines[0]
