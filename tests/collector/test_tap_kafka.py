"""Kafka tap: decoding without a broker, and a live test when SAGALENS_KAFKA_BOOTSTRAP is set."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from collector.receivers.kafka import decode_records
from collector.receivers.taps import TapConfigError, parse_tap
from tests.conftest import running_collector, wait_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TAP = parse_tap({"kind": "kafka", "bootstrap": "127.0.0.1:9092", "topics": ["orders"]})


def _record(
    value: bytes | None, headers: list[tuple[str, bytes]], key: bytes | None = None, offset: int = 5
) -> SimpleNamespace:
    return SimpleNamespace(
        topic="orders",
        partition=2,
        offset=offset,
        key=key,
        value=value,
        headers=headers,
        timestamp=1_700_000_000_000,
    )


def _event() -> CloudEvent:
    return CloudEvent(
        {
            "id": "k-1",
            "source": "/orders",
            "type": "OrderPlaced",
            "traceparent": f"00-{TRACE}-{SPAN}-01",
            "datacontenttype": "application/json",
        },
        {"orderId": 1},
    )


def test_binary_mode_from_the_sdk_binding() -> None:
    wire = ce_kafka.to_binary_event(_event())
    pending = decode_records([_record(wire.value, list(wire.headers.items()), wire.key)], TAP, 1)
    [event] = pending.batch.events
    assert (event.id, event.source, event.type, event.transport) == (
        "k-1",
        "/orders",
        "OrderPlaced",
        "kafka",
    )
    assert (event.trace_id, event.parent_span_id) == (TRACE, SPAN)
    assert event.data == {"orderId": 1}
    assert event.destination == "orders"
    details = event.destination_details
    assert (details["topic"], details["partition"], details["offset"]) == ("orders", 2, 5)


def test_structured_mode_from_the_sdk_binding() -> None:
    wire = ce_kafka.to_structured_event(_event())
    pending = decode_records([_record(wire.value, list(wire.headers.items()))], TAP, 1)
    [event] = pending.batch.events
    assert (event.id, event.type, event.trace_id) == ("k-1", "OrderPlaced", TRACE)


@pytest.mark.parametrize(
    ("value", "headers", "expected_id", "expected_type"),
    [
        (b'{"orderId": 2}', [], "orders/2/5", "orders"),
        (b'{"orderId": 2}', [("message-id", b"m-9")], "m-9", "orders"),
    ],
)
def test_plain_records_use_offset_or_message_id(
    value: bytes, headers: list[tuple[str, bytes]], expected_id: str, expected_type: str
) -> None:
    [event] = decode_records([_record(value, headers)], TAP, 1).batch.events
    assert (event.id, event.type, event.source) == (expected_id, expected_type, "kafka://orders")
    assert event.time_ns == 1_700_000_000_000 * 1_000_000


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"\xff\xfe", [], "not valid JSON"),
        (None, [("ce_id", b"1"), ("ce_specversion", b"1.0")], "missing required CloudEvents"),
        (
            b"{}",
            [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t"), ("ce_specversion", b"0.3")],
            "unsupported specversion",
        ),
    ],
)
def test_poison_records_become_rejections(
    value: bytes | None, headers: list[tuple[str, bytes]], reason: str
) -> None:
    pending = decode_records([_record(value, headers)], TAP, 1)
    assert not pending.batch.events
    [rejection] = pending.batch.rejections
    assert reason in rejection.reason and rejection.source == "kafka:orders"


def test_live_kafka_tap(tmp_path: Path) -> None:
    bootstrap = os.environ.get("SAGALENS_KAFKA_BOOTSTRAP", "")
    if not bootstrap:
        # Deliberately a skip even under SAGALENS_REQUIRE_BROKERS=1: no Kafka runs on the
        # development and CI machines.
        pytest.skip("SAGALENS_KAFKA_BOOTSTRAP is not set; no Kafka broker to test against")
    import asyncio

    from aiokafka import AIOKafkaProducer

    topic = f"sagalens-test-{uuid.uuid4().hex[:8]}"

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            wire = ce_kafka.to_binary_event(_event())
            await producer.send_and_wait(
                topic, wire.value, key=wire.key, headers=list(wire.headers.items())
            )
            await producer.send_and_wait(topic, json.dumps({"n": 1}).encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    with running_collector(
        tmp_path, "--tap", f"kafka://{bootstrap}?topic={topic}&group={topic}"
    ) as c:
        wait_for(lambda: c.counts()["events"] == 2, timeout=30)


@pytest.mark.parametrize(
    ("bootstrap", "ok"),
    [
        ("127.0.0.1:9092", True),
        ("a:9092, b:9093", True),
        ("[::1]:9092", True),
        (":::", False),
        ("broker", False),
        ("broker:", False),
        (":9092", False),
        ("broker:99999", False),
        ("a:9092,", False),
    ],
)
def test_bootstrap_must_be_host_port_pairs(bootstrap: str, ok: bool) -> None:
    entry = {"kind": "kafka", "bootstrap": bootstrap, "topics": ["orders"]}
    if ok:
        assert parse_tap(entry).bootstrap == bootstrap
    else:
        with pytest.raises(TapConfigError, match="'bootstrap' must be host:port"):
            parse_tap(entry)
