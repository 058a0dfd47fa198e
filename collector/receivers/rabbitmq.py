"""RabbitMQ tap: its own queue bound to a service exchange, acked only after the commit.

The tap declares ``sagalens.tap.<exchange>`` (or a configured name) and binds it with
each configured key, so it receives a copy of every message while the services keep
their own queues untouched. Messages are collected up to ``batch_size`` or
``batch_ms``, decoded off the event loop, written in one commit and then acknowledged
with a single ``multiple`` ack. Several batches are in flight at once (the prefetch
window), so the broker keeps delivering while earlier batches commit.

The tap speaks AMQP through aiormq, the protocol layer under aio-pika: a delivery costs
one small callback instead of a full message object. When the connection drops (a broker
restart) the tap stops with an error and its supervisor starts it again, which
re-declares the queue; messages whose ack was lost come back and are counted as
duplicates by the store (their event key is unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import aiormq
from aiormq.abc import DeliveredMessage

from collector.normalize.cloudevents import Decoded, decode_amqp
from collector.receivers.taps import Pending, TapConfig, TapStats, commit

if TYPE_CHECKING:
    from collector.service import Collector

log = logging.getLogger("sagalens.taps.rabbitmq")


# Batches in flight at once: one filling, the rest decoding or committing.
WINDOW_BATCHES = 8


def decode_incoming(message: DeliveredMessage, tap: TapConfig, received_ns: int) -> Decoded:
    """Decode one delivered AMQP message (no I/O; safe to run in a worker thread)."""
    props = message.header.properties
    stamp = props.timestamp
    return decode_amqp(
        message.body,
        dict(props.headers or {}),
        props.content_type or "",
        exchange=message.exchange or tap.exchange,
        routing_key=message.routing_key or "",
        message_id=props.message_id or "",
        timestamp_ns=int(stamp.timestamp() * 1_000_000_000) if stamp else 0,
        received_ns=received_ns,
        type_field=tap.type_field,
        max_bytes=tap.max_message_bytes,
    )


def _decode_all(messages: list[DeliveredMessage], tap: TapConfig) -> Pending:
    pending = Pending()
    now = time.time_ns()
    for message in messages:
        pending.add(decode_incoming(message, tap, now), message.delivery_tag)
    return pending


async def _ack(channel: aiormq.abc.AbstractChannel, tags: list[Any]) -> None:
    """One ``multiple`` ack: the last delivery tag covers every earlier one on the channel."""
    last = max((t for t in tags if t is not None), default=None)
    if last is None:
        return
    try:
        await channel.basic_ack(last, multiple=True)
    except Exception as exc:  # channel closed by a broker restart: the broker redelivers
        log.info("ack after commit failed (%s); the broker redelivers, the store dedups", exc)


async def run_rabbitmq_tap(
    collector: Collector, tap: TapConfig, stats: TapStats | None = None
) -> None:
    """Consume until cancelled; raise when the connection is lost (the supervisor restarts)."""
    stats = stats or TapStats()
    connection = await aiormq.connect(tap.url, client_properties={"connection_name": tap.name})
    inbox = _Inbox(tap.batch_size)
    try:
        channel = await connection.channel()
        # Room for several batches: the broker keeps sending while earlier ones commit.
        await channel.basic_qos(prefetch_count=max(WINDOW_BATCHES * tap.batch_size, 100))
        await channel.queue_declare(tap.queue, durable=tap.durable, auto_delete=not tap.durable)
        for key in tap.bindings:
            await channel.queue_bind(tap.queue, tap.exchange, routing_key=key)
        await channel.basic_consume(tap.queue, inbox.put, no_ack=False)
        log.warning(
            "tap %s: consuming %s (bindings %s)", tap.name, tap.queue, ", ".join(tap.bindings)
        )
        loop = asyncio.create_task(_batch_loop(collector, tap, inbox, stats, channel))
        closed = asyncio.ensure_future(connection.closing)
        try:
            done, _ = await asyncio.wait({loop, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.cancel()
            closed.cancel()
        if loop in done:
            loop.result()
        raise ConnectionError(f"connection to {tap.url} was closed")
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


class _Inbox:
    """Deliveries waiting for a batch; one timer per batch rather than one per message."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[DeliveredMessage] = []
        self.ready = asyncio.Event()
        self.full = asyncio.Event()

    async def put(self, message: DeliveredMessage) -> None:
        self.items.append(message)
        self.ready.set()
        if len(self.items) >= self.size:
            self.full.set()

    async def take(self, wait_s: float) -> list[DeliveredMessage]:
        await self.ready.wait()
        if len(self.items) < self.size and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.full.wait(), wait_s)
        batch, self.items = self.items[: self.size], self.items[self.size :]
        if not self.items:
            self.ready.clear()
        if len(self.items) < self.size:
            self.full.clear()
        return batch


async def _batch_loop(
    collector: Collector,
    tap: TapConfig,
    inbox: _Inbox,
    stats: TapStats,
    channel: aiormq.abc.AbstractChannel,
) -> None:
    previous: asyncio.Task[None] | None = None
    try:
        while True:
            messages = await inbox.take(tap.batch_ms / 1000)
            pending = await asyncio.to_thread(_decode_all, messages, tap)
            # Commit this batch while the next one fills; acks stay in delivery order.
            previous = asyncio.create_task(
                _commit_then_ack(collector, channel, pending, stats, previous, tap.name)
            )
    finally:
        if previous is not None:
            previous.cancel()


async def _commit_then_ack(
    collector: Collector,
    channel: aiormq.abc.AbstractChannel,
    pending: Pending,
    stats: TapStats,
    previous: asyncio.Task[None] | None,
    name: str,
) -> None:
    ok = await commit(collector, pending, stats, name)
    if previous is not None:
        await previous
    if ok:
        await _ack(channel, pending.acks)
