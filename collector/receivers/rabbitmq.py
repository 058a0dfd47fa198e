"""RabbitMQ tap: its own queue bound to a service exchange, acked only after the commit.

The tap declares ``sagalens.tap.<exchange>`` (or a configured name) and binds it with
each configured key, so it receives a copy of every message while the services keep
their own queues untouched. Messages are collected up to ``batch_size`` or
``batch_ms``, decoded off the event loop, written in one commit and then acknowledged
with a single ``multiple`` ack per channel. After a broker restart the robust connection
re-declares the queue and resumes; messages whose ack was lost come back and are
counted as duplicates by the store (their event key is unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from collector.normalize.cloudevents import Decoded, decode_amqp
from collector.receivers.taps import Pending, TapConfig, TapStats, commit

if TYPE_CHECKING:
    from collector.service import Collector

log = logging.getLogger("sagalens.taps.rabbitmq")


def decode_incoming(message: AbstractIncomingMessage, tap: TapConfig, received_ns: int) -> Decoded:
    """Decode one delivered AMQP message (no I/O; safe to run in a worker thread)."""
    stamp = message.timestamp
    return decode_amqp(
        message.body,
        dict(message.headers or {}),
        message.content_type or "",
        exchange=message.exchange or tap.exchange,
        routing_key=message.routing_key or "",
        message_id=message.message_id or "",
        timestamp_ns=int(stamp.timestamp() * 1_000_000_000) if stamp else 0,
        received_ns=received_ns,
        type_field=tap.type_field,
        max_bytes=tap.max_message_bytes,
    )


def _decode_all(messages: list[AbstractIncomingMessage], tap: TapConfig) -> Pending:
    pending = Pending()
    now = time.time_ns()
    for message in messages:
        pending.add(decode_incoming(message, tap, now), message)
    return pending


async def _ack(messages: list[AbstractIncomingMessage]) -> None:
    """One ``multiple`` ack per channel: the last tag covers every earlier one on it."""
    last: dict[int, AbstractIncomingMessage] = {}
    for message in messages:
        try:
            key = id(message.channel)
        except Exception:  # channel closed by a broker restart: the broker redelivers
            continue
        last[key] = message
    for message in last.values():
        try:
            await message.ack(multiple=True)
        except Exception as exc:
            log.info("ack after commit failed (%s); the broker redelivers, the store dedups", exc)


async def run_rabbitmq_tap(
    collector: Collector, tap: TapConfig, stats: TapStats | None = None
) -> None:
    """Consume until cancelled."""
    stats = stats or TapStats()
    connection = await aio_pika.connect_robust(
        tap.url, reconnect_interval=1.0, client_properties={"connection_name": tap.name}
    )
    inbox = _Inbox(tap.batch_size)
    try:
        channel = await connection.channel()
        # Room for the batch being committed and the next one filling up.
        await channel.set_qos(prefetch_count=max(2 * tap.batch_size, 100))
        queue = await channel.declare_queue(
            tap.queue, durable=tap.durable, auto_delete=not tap.durable
        )
        for key in tap.bindings:
            await queue.bind(tap.exchange, routing_key=key)
        await queue.consume(inbox.put, no_ack=False)
        log.warning(
            "tap %s: consuming %s (bindings %s)", tap.name, tap.queue, ", ".join(tap.bindings)
        )
        await _batch_loop(collector, tap, inbox, stats)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


class _Inbox:
    """Deliveries waiting for a batch; one timer per batch rather than one per message."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: list[AbstractIncomingMessage] = []
        self.ready = asyncio.Event()
        self.full = asyncio.Event()

    async def put(self, message: AbstractIncomingMessage) -> None:
        self.items.append(message)
        self.ready.set()
        if len(self.items) >= self.size:
            self.full.set()

    async def take(self, wait_s: float) -> list[AbstractIncomingMessage]:
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


async def _batch_loop(collector: Collector, tap: TapConfig, inbox: _Inbox, stats: TapStats) -> None:
    previous: asyncio.Task[None] | None = None
    try:
        while True:
            messages = await inbox.take(tap.batch_ms / 1000)
            pending = await asyncio.to_thread(_decode_all, messages, tap)
            # Commit this batch while the next one fills; acks stay in delivery order.
            previous = asyncio.create_task(
                _commit_then_ack(collector, tap, pending, stats, previous)
            )
    finally:
        if previous is not None:
            previous.cancel()


async def _commit_then_ack(
    collector: Collector,
    tap: TapConfig,
    pending: Pending,
    stats: TapStats,
    previous: asyncio.Task[None] | None,
) -> None:
    ok = await commit(collector, pending, stats, tap.name)
    if previous is not None:
        await previous
    if ok:
        await _ack(pending.acks)
