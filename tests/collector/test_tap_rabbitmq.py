"""RabbitMQ tap against the real broker: copies, formats, poison messages, broker restart."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import duckdb
import httpx
import pytest
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import require_service, running_collector, wait_for

pytestmark = pytest.mark.brokers

URL = "amqp://guest:guest@127.0.0.1:5672/"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def broker() -> AsyncIterator[dict[str, Any]]:
    """A fresh durable topic exchange and a service queue bound to it; removed afterwards."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    name = f"sagalens-test-{uuid.uuid4().hex[:10]}"
    conn = await aio_pika.connect(URL)
    channel = await conn.channel()
    exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
    service = await channel.declare_queue(f"{name}.service", durable=True)
    await service.bind(exchange, "#")
    await conn.close()
    try:
        yield {
            "name": name,
            "service_queue": f"{name}.service",
            "tap_queue": f"sagalens.tap.{name}",
        }
    finally:
        await _restore_broker()
        conn = await aio_pika.connect(URL)
        channel = await conn.channel()
        for queue in (f"{name}.service", f"sagalens.tap.{name}"):
            await channel.queue_delete(queue)
        await channel.exchange_delete(name)
        await conn.close()


async def _restore_broker() -> None:
    """Leave RabbitMQ running for everyone else, whatever a test did to it."""
    for _ in range(60):
        try:
            conn = await aio_pika.connect(URL, timeout=2)
            await conn.close()
            return
        except Exception:
            subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=60)
            await asyncio.sleep(0.5)


def _tap_arg(broker: dict[str, Any], extra: str = "") -> str:
    return f"{URL}?exchange={broker['name']}&binding=%23&batch_ms=20{extra}"


async def _queue_state(name: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue, or (-1, 0) while it does not exist."""
    conn = await aio_pika.connect(URL)
    try:
        channel = await conn.channel()
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    except aio_pika.exceptions.ChannelClosed:
        return -1, 0
    finally:
        await conn.close()


async def _wait_consumer(queue: str) -> None:
    for _ in range(150):
        if (await _queue_state(queue))[1] >= 1:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the tap never started consuming {queue}")


async def _publish(exchange_name: str, messages: list[aio_pika.Message], keys: list[str]) -> None:
    conn = await aio_pika.connect(URL)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        for message, key in zip(messages, keys, strict=True):
            await exchange.publish(message, routing_key=key)
    finally:
        await conn.close()


def _ce_message(mode: str, i: int) -> aio_pika.Message:
    event = CloudEvent(
        {
            "id": f"ce-{mode}-{i}",
            "source": "/orders",
            "type": "OrderPlaced",
            "traceparent": f"00-{TRACE}-{SPAN}-01",
            "correlationid": f"order-{i}",
            "datacontenttype": "application/json",
        },
        {"orderId": i},
    )
    wire = (
        ce_rabbitmq.to_structured_event(event)
        if mode == "structured"
        else ce_rabbitmq.to_binary_event(event)
    )
    return aio_pika.Message(
        wire.body,
        headers=dict(wire.headers),
        content_type=wire.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _store_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


async def test_tap_stores_every_format_once_and_services_still_get_everything(
    tmp_path: Path, broker: dict[str, Any]
) -> None:
    name = broker["name"]
    plain = {"orderId": 7, "eventType": "PaymentCaptured"}
    messages = [
        _ce_message("structured", 1),
        _ce_message("binary", 2),
        # AMQP binding proper: cloudEvents: application properties.
        aio_pika.Message(
            b'{"orderId": 3}',
            content_type="application/json",
            headers={
                "cloudEvents:id": "amqp-3",
                "cloudEvents:source": "/inventory",
                "cloudEvents:specversion": "1.0",
                "cloudEvents:type": "InventoryReserved",
                "cloudEvents:causationid": "ce-binary-2",
            },
        ),
        aio_pika.Message(
            json.dumps(plain).encode(),
            message_id="m-1",
            headers={"traceparent": f"00-{TRACE}-{SPAN}-01"},
        ),
        # a publisher retry: the same message again (either of the two tap workers may
        # commit its copy first)
        aio_pika.Message(
            json.dumps(plain).encode(),
            message_id="m-1",
            headers={"traceparent": f"00-{TRACE}-{SPAN}-01"},
        ),
        aio_pika.Message(b'{"orderId": 8}'),  # aiormq gives it a random message id
        aio_pika.Message(b"\x00not json at all"),  # poison
        aio_pika.Message(b'{"pad": "' + b"x" * 70_000 + b'"}', message_id="big"),  # oversized
        aio_pika.Message(
            b'{"specversion": "1.0", "source": "/x", "type": "T"}',
            content_type="application/cloudevents+json",
        ),  # no id
        aio_pika.Message(
            b'{"specversion": "0.3", "id": "1", "source": "/x", "type": "T"}',
            content_type="application/cloudevents+json",
        ),  # wrong version
    ]
    keys = [
        "orders.placed",
        "orders.placed",
        "inventory.reserved",
        "payments.captured",
        "payments.captured",
        "orders.misc",
        "orders.bad",
        "orders.big",
        "orders.bad",
        "orders.bad",
    ]
    with running_collector(tmp_path, "--tap", _tap_arg(broker, "&max_message_bytes=65536")) as c:
        await _wait_consumer(broker["tap_queue"])
        await _publish(name, messages, keys)
        wait_for(lambda: c.counts()["events"] == 5 and c.counts()["rejections"] == 4, timeout=20)
        ready = 0
        for _ in range(50):
            ready, _consumers = await _queue_state(broker["tap_queue"])
            if ready == 0:
                break
            await asyncio.sleep(0.1)
        assert ready == 0
        assert c.stop() == 0
    # The service's own queue got every message, untouched by the tap.
    assert (await _queue_state(broker["service_queue"]))[0] == len(messages)

    rows = {
        r[0]: r
        for r in _store_rows(
            c.db,
            (
                "SELECT id, type, source, transport, destination, trace_id, parent_span_id, "
                "extensions, destination_details, message_id, data FROM events"
            ),
        )
    }
    assert len(rows) == 5
    assert {"ce-structured-1", "ce-binary-2", "amqp-3", "m-1"} < set(rows)
    structured = rows["ce-structured-1"]
    assert structured[1:5] == ("OrderPlaced", "/orders", "amqp", f"{name}/orders.placed")
    assert structured[5:7] == (TRACE, SPAN)
    assert json.loads(structured[7])["correlationid"] == "order-1"
    assert rows["ce-binary-2"][5] == TRACE
    assert json.loads(rows["amqp-3"][7]) == {"causationid": "ce-binary-2"}
    plain_row = rows["m-1"]
    assert plain_row[1:4] == ("payments.captured", f"amqp://{name}", "amqp")
    assert plain_row[5] == TRACE
    assert json.loads(plain_row[8]) == {"exchange": name, "routing_key": "payments.captured"}
    reasons = [r[0] for r in _store_rows(c.db, "SELECT reason FROM rejections ORDER BY reason")]
    assert any("not valid JSON" in r for r in reasons)
    assert any("exceeds the limit of 65536 bytes" in r for r in reasons)
    assert any("missing required CloudEvents attribute: id" in r for r in reasons)
    assert any("unsupported specversion '0.3'" in r for r in reasons)


async def test_type_from_json_field(tmp_path: Path, broker: dict[str, Any]) -> None:
    body = json.dumps({"data": {"eventType": "ShipmentDispatched"}}).encode()
    with running_collector(tmp_path, "--tap", _tap_arg(broker, "&type_from=data.eventType")) as c:
        await _wait_consumer(broker["tap_queue"])
        await _publish(broker["name"], [aio_pika.Message(body, message_id="s-1")], ["shipping.x"])
        wait_for(lambda: c.counts()["events"] == 1)
        assert c.stop() == 0
    assert _store_rows(c.db, "SELECT type FROM events") == [("ShipmentDispatched",)]


async def test_broker_restart_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, broker: dict[str, Any]
) -> None:
    total, half = 3000, 1500

    def batch(lo: int, hi: int) -> list[aio_pika.Message]:
        return [
            aio_pika.Message(
                json.dumps({"n": i}).encode(),
                message_id=f"r-{i}",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            for i in range(lo, hi)
        ]

    with running_collector(tmp_path, "--tap", _tap_arg(broker)) as c:
        await _wait_consumer(broker["tap_queue"])
        await _publish(broker["name"], batch(0, half), ["orders.n"] * half)
        try:
            # Restart while the tap still holds unacked deliveries from the first half.
            subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        finally:
            subprocess.run(
                ["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60
            )
        await _restore_broker()
        await _wait_consumer(broker["tap_queue"])
        await _publish(broker["name"], batch(half, total), ["orders.n"] * (total - half))
        wait_for(lambda: c.counts()["events"] >= total, timeout=30)
        await asyncio.sleep(0.5)  # anything redelivered late must not add rows
        assert c.counts()["events"] == total
        assert c.stop() == 0
    assert (await _queue_state(broker["service_queue"]))[0] == total
    ids = _store_rows(c.db, "SELECT count(DISTINCT message_id), count(*) FROM events")
    assert ids == [(total, total)]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


async def test_workers_stop_with_the_collector_even_when_it_is_killed(
    tmp_path: Path, broker: dict[str, Any]
) -> None:
    """The tap's worker processes never outlive the collector, however it ends."""
    for stop in ("SIGTERM", "SIGKILL"):
        with running_collector(tmp_path, "--tap", _tap_arg(broker)) as c:
            await _wait_consumer(broker["tap_queue"])
            children = subprocess.run(
                ["pgrep", "-P", str(c.proc.pid), "-f", "rabbitmq_worker"],
                capture_output=True,
                text=True,
            ).stdout.split()
            assert len(children) >= 1, "the tap runs in worker processes"
            if stop == "SIGKILL":
                c.proc.kill()
            else:
                assert c.stop() == 0
            wait_for(lambda pids=children: not any(_alive(int(p)) for p in pids), timeout=15)


def _metric(c: Any, name: str, tap: str) -> float:
    text = httpx.get(c.url + "/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{[^}}]*tap="{re.escape(tap)}"[^}}]*\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else -1.0


async def test_message_the_decoder_cannot_parse_is_rejected_and_the_queue_moves_on(
    tmp_path: Path, broker: dict[str, Any]
) -> None:
    """JSON nested deeper than the parser recurses once stopped the worker at every redelivery."""
    deep = aio_pika.Message(b"[" * 100_000 + b"]" * 100_000, message_id="deep-1")
    good = aio_pika.Message(b'{"ok": 1}', message_id="good-1")
    with running_collector(tmp_path, "--tap", _tap_arg(broker, "&name=deep")) as c:
        await _wait_consumer(broker["tap_queue"])
        await _publish(broker["name"], [deep, good], ["orders.deep", "orders.good"])
        wait_for(lambda: c.counts()["events"] == 1 and c.counts()["rejections"] == 1)
        wait_for(lambda: _metric(c, "sagalens_tap_rejected_total", "deep") == 1)
        assert (await _queue_state(broker["tap_queue"]))[0] == 0
        assert c.stop() == 0
    reasons = _store_rows(c.db, "SELECT reason FROM rejections")
    assert reasons == [
        (
            "message body is JSON nested too deeply to be read; not a CloudEvent "
            "(no cloudEvents:/cloudEvents_/ce-/ce_ attributes) nor a JSON message",
        )
    ]


def _close_connections(client_name: str) -> int:
    """Close the broker's connections whose client named itself ``client_name``."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pids = [line.split()[0] for line in listed.splitlines() if f'"{client_name}"' in line]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "test closes the tap"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    return len(pids)


async def test_tap_reconnects_when_the_broker_drops_it_and_says_so(
    tmp_path: Path, broker: dict[str, Any]
) -> None:
    """The broker closing the tap's connections (as at a restart), seen in the log, /metrics
    and the overview; nothing published meanwhile is lost."""
    name = f"reconnect-{uuid.uuid4().hex[:8]}"
    with running_collector(tmp_path, "--tap", _tap_arg(broker, f"&name={name}")) as c:
        await _wait_consumer(broker["tap_queue"])
        wait_for(lambda: _metric(c, "sagalens_tap_connected", name) == 1)
        assert _close_connections(name) >= 1
        message = aio_pika.Message(b'{"n": 1}', message_id="after-close")
        await _publish(broker["name"], [message], ["orders.n"])
        wait_for(lambda: c.counts()["events"] == 1, timeout=30)
        wait_for(lambda: _metric(c, "sagalens_tap_reconnects_total", name) >= 1)
        assert _metric(c, "sagalens_tap_connected", name) == 1
        (tap,) = c.get("/api/v1/overview")["taps"]
        assert (tap["name"], tap["state"], tap["messages"]) == (name, "connected", 1)
        assert c.stop() == 0
    log = c.log.read_text()
    assert f"tap {name}: the broker closed the connection: CONNECTION_FORCED" in log
    assert f"tap {name}: reconnected to amqp://guest:***@127.0.0.1:5672/ after" in log
    assert "Fatal Python error" not in log and "Traceback" not in log
