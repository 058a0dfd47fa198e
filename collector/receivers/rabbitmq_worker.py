"""The RabbitMQ tap's worker process: consume, decode, hand over batches, ack when told.

The collector starts one per RabbitMQ tap (``python -m collector.receivers.rabbitmq_worker``)
and talks to it over its standard input and output in length-prefixed pickle frames:

- collector → worker: the ``TapConfig`` first, then delivery tags to acknowledge
  (``multiple``: a tag covers every earlier delivery), each sent only after the batch that
  ends with it is committed;
- worker → collector: ``(messages, last_delivery_tag, PreparedBatch)`` per batch.

AMQP framing, CloudEvents decoding and building the Arrow tables thus run on a core of
their own, while the collector's process only inserts and analyses. The worker exits when
its standard input closes (the collector stopped or restarts the tap) and with an error
when the broker connection is lost, which the collector's supervisor answers by starting a
new worker; deliveries that were never acknowledged come back and the store counts them as
duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import struct
import sys
import time
from typing import Any

import aiormq
from aiormq.abc import DeliveredMessage

from collector.normalize.cloudevents import Decoded, decode_amqp
from collector.normalize.records import RecordBatch
from collector.receivers.taps import TapConfig
from collector.store.columns import PreparedBatch, prepare_batch

log = logging.getLogger("sagalens.taps.rabbitmq")

# Batches in flight at once: one filling, the rest being committed by the collector.
WINDOW_BATCHES = 8
_LENGTH = struct.Struct(">I")

Frame = tuple[int, int, PreparedBatch]  # messages, last delivery tag, the batch


# -- framing (shared with the collector side) ---------------------------------------------


def encode_frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's object, or None at end of stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
        (length,) = _LENGTH.unpack(head)
        return pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        return None


# -- decoding -------------------------------------------------------------------------------


def decode_incoming(message: DeliveredMessage, tap: TapConfig, received_ns: int) -> Decoded:
    """Decode one delivered AMQP message (no I/O)."""
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


def prepare_messages(messages: list[DeliveredMessage], tap: TapConfig) -> Frame:
    """Decode a batch of deliveries into the frame the collector commits."""
    batch = RecordBatch()
    now = time.time_ns()
    last = 0
    for message in messages:
        decoded = decode_incoming(message, tap, now)
        batch.events.extend(decoded.events)
        batch.rejections.extend(r for _, r in decoded.rejections)
        last = max(last, message.delivery_tag or 0)
    return len(messages), last, prepare_batch(batch)


# -- the worker -----------------------------------------------------------------------------


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


async def _pipes() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, sys.stdout.buffer
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer


async def _hand_over(
    tap: TapConfig, inbox: _Inbox, out: asyncio.StreamWriter
) -> None:  # fmt: skip
    while True:
        messages = await inbox.take(tap.batch_ms / 1000)
        frame = await asyncio.to_thread(prepare_messages, messages, tap)
        out.write(encode_frame(frame))
        await out.drain()


async def _acknowledge(channel: aiormq.abc.AbstractChannel, control: asyncio.StreamReader) -> None:
    """Ack what the collector committed; return when the collector closes the pipe."""
    while (tag := await read_frame(control)) is not None:
        try:
            await channel.basic_ack(int(tag), multiple=True)
        except Exception as exc:  # channel closed by a broker restart: the broker redelivers
            log.info("ack after commit failed (%s); the broker redelivers, the store dedups", exc)


async def serve() -> int:
    """Run one tap worker; the exit status tells the collector why it stopped."""
    control, out = await _pipes()
    tap = await read_frame(control)
    if not isinstance(tap, TapConfig):
        log.error("tap worker: expected a TapConfig on standard input")
        return 2
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
        tasks = {
            asyncio.create_task(_hand_over(tap, inbox, out)),
            asyncio.ensure_future(connection.closing),
        }
        acks = asyncio.create_task(_acknowledge(channel, control))
        try:
            done, _ = await asyncio.wait({*tasks, acks}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, acks):
                task.cancel()
        if acks in done:
            return 0  # the collector closed the pipe: a clean stop
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
        log.warning("tap %s: connection to the broker was closed", tap.name)
        return 1
    finally:
        with contextlib.suppress(Exception):
            await connection.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        code = asyncio.run(serve())
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:
        log.warning("tap worker stopped: %s: %s", type(exc).__name__, exc)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
