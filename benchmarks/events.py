"""Events/s through ``POST /v1/events`` (batch mode) and through the RabbitMQ tap.

The broker's own publish rate (aio-pika, publisher confirms off and on) is measured in
the same run as the reference the tap is compared with.

    .venv/bin/python benchmarks/events.py [--events 50000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika
import httpx

AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_collector(workdir: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    cmd = [
        sys.executable,
        "-m",
        "collector",
        "collector",
        "--db",
        str(workdir / "bench.duckdb"),
        "--http-port",
        str(port),
        "--grpc-port",
        str(_port()),
        *args,
    ]
    with open(workdir / "log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("collector did not start: " + (workdir / "log").read_text())


def _events_stored(url: str) -> int:
    return int(httpx.get(url + "/api/v1/stats", timeout=30).json()["counts"]["events"])


def _wait_events(url: str, n: int, timeout: float = 300) -> tuple[float, int]:
    """Wait until ``n`` events are stored; return when the first ones were seen, and how many."""
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    while (stored := _events_stored(url)) < n:
        if stored and first is None:
            first = (time.perf_counter(), stored)
        if time.monotonic() > deadline:
            raise SystemExit(f"only {_events_stored(url)} of {n} events arrived")
        time.sleep(0.25)  # polling is not free: each poll counts every table
    return first or (time.perf_counter(), stored)


def bench_http(url: str, n: int, batch: int, prefix: str) -> float:
    bodies = [
        json.dumps(
            [
                {
                    "specversion": "1.0",
                    "id": f"{prefix}-{i}",
                    "source": "/bench",
                    "type": "OrderPlaced",
                    "data": {"orderId": i, "amount": 12.5},
                }
                for i in range(lo, min(lo + batch, n))
            ]
        ).encode()
        for lo in range(0, n, batch)
    ]
    before = _events_stored(url)

    def post(body: bytes) -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                r = client.post(
                    url + "/v1/events",
                    content=body,
                    headers={"content-type": "application/cloudevents-batch+json"},
                )
                if r.status_code != 503:
                    r.raise_for_status()
                    return
                time.sleep(0.05)

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    assert _events_stored(url) - before == n
    return n / elapsed


def _messages(n: int, prefix: str) -> list[aio_pika.Message]:
    return [
        aio_pika.Message(
            json.dumps({"orderId": i, "amount": 12.5}).encode(),
            message_id=f"{prefix}-{i}",
            content_type="application/json",
        )
        for i in range(n)
    ]


async def publish(exchange_name: str, messages: list[aio_pika.Message], confirms: bool) -> float:
    conn = await aio_pika.connect(AMQP)
    try:
        channel = await conn.channel(publisher_confirms=confirms)
        exchange = await channel.get_exchange(exchange_name)
        started = time.perf_counter()
        if confirms:
            # Pipelined confirms: many publishes in flight, as a fast producer would do.
            for lo in range(0, len(messages), 500):
                await asyncio.gather(
                    *(exchange.publish(m, "orders.placed") for m in messages[lo : lo + 500])
                )
        else:
            for m in messages:
                await exchange.publish(m, "orders.placed")
        return len(messages) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--no-analysis",
        action="store_true",
        help="Run the collector without incremental saga analysis.",
    )
    args = parser.parse_args()
    extra = ["--no-analysis"] if args.no_analysis else []
    n = args.events
    tag = uuid.uuid4().hex[:8]
    tapped, reference = f"bench-tapped-{tag}", f"bench-ref-{tag}"
    conn = await aio_pika.connect(AMQP)
    channel = await conn.channel()
    for name in (tapped, reference):
        ex = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        q = await channel.declare_queue(f"{name}.sink", durable=True)
        await q.bind(ex, "#")
    # The tap's own queue, declared as the tap declares it, so a backlog can wait in it.
    tap_queue = await channel.declare_queue(f"sagalens.tap.{tapped}", durable=True)
    await tap_queue.bind(tapped, "#")
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_collector(Path(tmp), *extra)
        try:
            http_rate = bench_http(url, n, args.batch, f"http-{tag}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    broker_plain = await publish(reference, _messages(n, f"ref-{tag}"), confirms=False)
    await (await channel.get_queue(f"{reference}.sink")).purge()
    broker_confirmed = await publish(reference, _messages(n, f"refc-{tag}"), confirms=True)
    # Live: the tap consumes while a producer publishes (they share the CPU).
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_collector(
            Path(tmp), *extra, "--tap", f"{AMQP}?exchange={tapped}&binding=%23"
        )
        try:
            started = time.perf_counter()
            publish_rate = await publish(tapped, _messages(n, f"tap-{tag}"), confirms=False)
            await asyncio.to_thread(_wait_events, url, n)
            live_rate = n / (time.perf_counter() - started)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    # Drain: a backlog of n messages waits in the tap's queue; time the tap alone.
    await publish(tapped, _messages(n, f"drain-{tag}"), confirms=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_collector(
            Path(tmp), *extra, "--tap", f"{AMQP}?exchange={tapped}&binding=%23"
        )
        try:
            started = time.perf_counter()
            first_seen, first_count = await asyncio.to_thread(_wait_events, url, n)
            ended = time.perf_counter()
            drain_rate = n / (ended - started)
            # Once the tap's workers run: from the first stored events to the last.
            steady_rate = (n - first_count) / max(ended - first_seen, 1e-9)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            channel = await conn.channel()
            await channel.queue_delete(f"sagalens.tap.{tapped}")
            for name in (tapped, reference):
                await channel.queue_delete(f"{name}.sink")
                await channel.exchange_delete(name)
            await conn.close()
    target = min(20_000.0, broker_plain)
    print(f"{n} events, batches of {args.batch}, analysis {'off' if args.no_analysis else 'on'}")
    print(f"{'path':<44}{'events/s':>12}")
    print(f"{'POST /v1/events (batch mode, 4 clients)':<44}{http_rate:>12,.0f}")
    print(f"{'RabbitMQ publish, confirms off (reference)':<44}{broker_plain:>12,.0f}")
    print(f"{'RabbitMQ publish, confirms on (reference)':<44}{broker_confirmed:>12,.0f}")
    print(f"{'publish into the tapped exchange (live)':<44}{publish_rate:>12,.0f}")
    print(f"{'RabbitMQ tap live, publish start -> stored':<44}{live_rate:>12,.0f}")
    print(f"{'RabbitMQ tap draining a backlog, from start':<44}{drain_rate:>12,.0f}")
    print(f"{'  the same, once consuming (first stored on)':<44}{steady_rate:>12,.0f}")
    print(
        f"target: {target:,.0f}/s (20,000 or the broker's own rate if lower): "
        f"{'met' if steady_rate >= target else 'NOT met'} once consuming, "
        f"{'met' if drain_rate >= target else 'NOT met'} counting the tap's start"
    )


if __name__ == "__main__":
    asyncio.run(main())
