"""NATS JetStream tap against the real server: formats, poison messages, server restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import nats
import pytest
from nats.js import api

from tests.conftest import free_port, require_service, running_collector, wait_for

pytestmark = pytest.mark.brokers

URL = "nats://127.0.0.1:4222"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
NATS_START = [
    "start-stop-daemon",
    "--start",
    "--oknodo",
    "--background",
    "--exec",
    "/usr/sbin/nats-server",
    "--",
    "-a",
    "127.0.0.1",
    "-p",
    "4222",
    "-js",
    "-sd",
    "/var/lib/nats-server",
    "-l",
    "/var/log/nats-server.log",
]
NATS_STOP = ["start-stop-daemon", "--stop", "--retry", "5", "--exec", "/usr/sbin/nats-server"]


def _listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


def _ensure_running() -> None:
    """Leave NATS running for everyone else, whatever a test did to it."""
    if not _listening():
        subprocess.run(NATS_START, capture_output=True, timeout=30)
        wait_for(_listening, timeout=20)


@pytest.fixture
async def stream() -> AsyncIterator[dict[str, Any]]:
    """A unique subject space with a stream and a service's own durable consumer."""
    require_service("NATS", "127.0.0.1", 4222)
    tag = uuid.uuid4().hex[:10]
    info = {"stream": f"SAGALENS_TEST_{tag}", "prefix": f"sltest{tag}", "service": "service"}
    nc = await nats.connect(URL)
    js = nc.jetstream()
    await js.add_stream(name=info["stream"], subjects=[f"{info['prefix']}.>"])
    await js.add_consumer(
        info["stream"],
        api.ConsumerConfig(durable_name="service", ack_policy=api.AckPolicy.EXPLICIT),
    )
    await nc.close()
    try:
        yield info
    finally:
        _ensure_running()
        nc = await nats.connect(URL)
        with_js = nc.jetstream()
        try:
            await with_js.delete_stream(info["stream"])
        finally:
            await nc.close()


async def _publish(subject_messages: list[tuple[str, bytes, dict[str, str] | None]]) -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        for subject, body, headers in subject_messages:
            await js.publish(subject, body, headers=headers)
    finally:
        await nc.close()


async def _consumer(stream: str, durable: str) -> api.ConsumerInfo:
    nc = await nats.connect(URL)
    try:
        return await nc.jetstream().consumer_info(stream, durable)
    finally:
        await nc.close()


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


async def test_tap_binds_existing_stream_and_decodes_every_format(
    tmp_path: Path, stream: dict[str, Any]
) -> None:
    p = stream["prefix"]
    structured = {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/orders",
        "type": "OrderPlaced",
        "traceparent": f"00-{TRACE}-{SPAN}-01",
        "data": {"orderId": 1},
    }
    messages = [
        (
            f"{p}.orders.placed",
            json.dumps(structured).encode(),
            {"content-type": "application/cloudevents+json"},
        ),
        (
            f"{p}.payments.captured",
            b'{"orderId": 1}',
            {
                "ce-id": "b-1",
                "ce-source": "/payments",
                "ce-specversion": "1.0",
                "ce-type": "PaymentCaptured",
                "ce-causationid": "s-1",
                "content-type": "application/json",
            },
        ),
        (f"{p}.shipping.dispatched", b'{"orderId": 1}', {"Nats-Msg-Id": "plain-1"}),
        (f"{p}.shipping.dispatched", b'{"orderId": 2}', None),
        (f"{p}.bad", b"<xml/>", None),
        (f"{p}.bad", b'{"orderId": 3}', {"ce-id": "x", "ce-specversion": "1.0"}),
    ]
    with running_collector(tmp_path, "--tap", f"{URL}?subject={p}.>&durable=tap") as c:
        await _publish(messages)
        wait_for(lambda: c.counts()["events"] == 4 and c.counts()["rejections"] == 2)
        await asyncio.sleep(0.3)
        tap = await _consumer(stream["stream"], "tap")
        assert tap.num_ack_pending == 0 and tap.num_pending == 0
        assert c.stop() == 0
    service = await _consumer(stream["stream"], "service")
    assert service.num_pending == len(messages)  # the service's consumer still has all
    rows = {
        r[0]: r
        for r in _rows(
            c.db,
            "SELECT id, type, source, transport, destination, "
            "trace_id, extensions, destination_details FROM events",
        )
    }
    assert rows["s-1"][1:6] == ("OrderPlaced", "/orders", "nats", f"{p}.orders.placed", TRACE)
    assert json.loads(rows["b-1"][6]) == {"causationid": "s-1"}
    plain = rows["plain-1"]
    assert plain[1:4] == (f"{p}.shipping.dispatched", f"nats://{stream['stream']}", "nats")
    details = json.loads(plain[7])
    assert details["stream"] == stream["stream"] and details["sequence"] == 3
    assert any(i.startswith("sha256:") for i in rows)
    reasons = " | ".join(r[0] for r in _rows(c.db, "SELECT reason FROM rejections"))
    assert (
        "not valid JSON" in reasons
        and "missing required CloudEvents attributes: source, type" in reasons
    )


async def test_tap_creates_its_stream_when_configured(tmp_path: Path) -> None:
    require_service("NATS", "127.0.0.1", 4222)
    tag = uuid.uuid4().hex[:10]
    name, subject = f"SAGALENS_NEW_{tag}", f"slnew{tag}.>"
    config = tmp_path / "sagalens.yaml"
    config.write_text(
        f"taps:\n  - kind: nats\n    url: {URL}\n    subjects: ['{subject}']\n"
        f"    stream: {name}\n    create_stream: true\n"
    )
    try:
        with running_collector(tmp_path, config=str(config)) as c:

            async def stream_exists() -> bool:
                try:
                    await _consumer(name, "sagalens")
                    return True
                except Exception:
                    return False

            for _ in range(100):
                if await stream_exists():
                    break
                await asyncio.sleep(0.1)
            await _publish([(f"slnew{tag}.a", b'{"k": 1}', None)])
            wait_for(lambda: c.counts()["events"] == 1)
    finally:
        nc = await nats.connect(URL)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(name)
        await nc.close()


async def test_server_restart_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, stream: dict[str, Any]
) -> None:
    p, total, half = stream["prefix"], 2000, 1000

    def batch(lo: int, hi: int) -> list[tuple[str, bytes, dict[str, str] | None]]:
        return [
            (f"{p}.n", json.dumps({"n": i}).encode(), {"Nats-Msg-Id": f"r-{i}"})
            for i in range(lo, hi)
        ]

    with running_collector(tmp_path, "--tap", f"{URL}?subject={p}.>&batch_ms=20") as c:
        await _publish(batch(0, half))
        try:
            subprocess.run(NATS_STOP, check=True, capture_output=True, timeout=30)
        finally:
            _ensure_running()
        await _publish(batch(half, total))
        wait_for(lambda: c.counts()["events"] >= total, timeout=30)
        await asyncio.sleep(0.5)
        assert c.counts()["events"] == total
        assert c.stop() == 0
    assert _rows(c.db, "SELECT count(DISTINCT id), count(*) FROM events") == [(total, total)]
    assert (await _consumer(stream["stream"], "service")).num_pending == total


async def test_subject_no_stream_covers_is_reported_and_shown(tmp_path: Path) -> None:
    """The log, /metrics and the overview say why the tap is not consuming."""
    require_service("NATS", "127.0.0.1", 4222)
    subject = f"sltest{uuid.uuid4().hex[:10]}.orders"
    with running_collector(tmp_path, "--tap", f"{URL}?subject={subject}&name=nostream") as c:
        expected = f"no JetStream stream covers subject {subject!r}"

        def reported() -> bool:
            (tap,) = c.get("/api/v1/overview")["taps"]
            return tap["state"] == "connecting" and expected in tap["last_error"]

        wait_for(reported)
        metrics = httpx.get(c.url + "/metrics", timeout=10).text
        assert 'sagalens_tap_connected{kind="nats",tap="nostream"} 0.0' in metrics
        assert c.stop() == 0
    assert f"tap nostream: {expected}" in c.log.read_text()


async def test_message_the_decoder_cannot_parse_is_terminated_not_retried(
    tmp_path: Path, stream: dict[str, Any]
) -> None:
    p = stream["prefix"]
    deep = b"[" * 100_000 + b"]" * 100_000
    with running_collector(tmp_path, "--tap", f"{URL}?subject={p}.>&batch_ms=20&name=deep") as c:
        await _publish([(f"{p}.deep", deep, None), (f"{p}.good", b'{"ok": 1}', None)])
        wait_for(lambda: c.counts()["events"] == 1 and c.counts()["rejections"] == 1)
        (tap,) = c.get("/api/v1/overview")["taps"]
        assert (tap["state"], tap["messages"], tap["rejected"]) == ("connected", 2, 1)
        info = await _consumer(stream["stream"], "sagalens")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        assert c.stop() == 0
    assert "nested too deeply" in _rows(c.db, "SELECT reason FROM rejections")[0][0]


def test_an_unreachable_server_is_reported_with_the_clients_retry_interval(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with running_collector(
        tmp_path, "--tap", f"nats://127.0.0.1:{port}?subject=a.b&name=away"
    ) as c:

        def reported() -> bool:
            (tap,) = c.get("/api/v1/overview")["taps"]
            return tap["state"] == "connecting" and "cannot connect" in tap["last_error"]

        wait_for(reported)
        assert c.stop() == 0
    # The client retries every half second by itself; the log says so, not the 10 s at most
    # of the RabbitMQ tap's growing waits.
    assert "tap away: cannot connect" in c.log.read_text()
    assert "retrying (every 0.5s at most)" in c.log.read_text()
