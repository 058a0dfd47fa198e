"""The RabbitMQ tap's worker process: consume, decode, hand over batches, ack when told.

The collector starts one per RabbitMQ tap (``python -m collector.receivers.rabbitmq_worker``)
and talks to it over its standard input and output in length-prefixed pickle frames:

- collector → worker: the ``TapConfig`` first, then delivery tags to acknowledge
  (``multiple``: a tag covers every earlier delivery), each sent only after the batch that
  ends with it is committed;
- worker → collector: :class:`Consuming` once the queue is declared and bound, then
  ``(messages, last_delivery_tag, PreparedBatch)`` per batch, and :class:`Failed` with the
  reason when the broker connection cannot be made or is lost.

AMQP framing, CloudEvents decoding and building the Arrow tables thus run on a core of
their own, while the collector's process only inserts and analyses. The worker speaks
AMQP through pika's blocking connection: with one consumer per process there is nothing
to schedule, and pika's frame handling costs less than half of an asyncio client's per
message. Acknowledgements arrive on a reader thread and are handed to the connection's
own thread (``add_callback_threadsafe``), as pika requires.

The worker exits when its standard input closes (the collector stopped or restarts the
tap) and with an error when the broker connection is lost, which the collector's
supervisor answers by starting a new worker; deliveries that were never acknowledged
come back and the store counts them as duplicates. A message that cannot be decoded for
any reason becomes a rejection and is acknowledged like the rest: were the worker to
stop on it, the broker would hand it over again and again and the tap never get past it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from collector.normalize.cloudevents import Decoded, decode_amqp, sample_of
from collector.normalize.records import RecordBatch, Rejection
from collector.receivers.taps import TapConfig
from collector.store.columns import PreparedBatch, prepare_batch

log = logging.getLogger("sagalens.taps.rabbitmq")

# Batches in flight at once: one filling, the rest being committed by the collector.
WINDOW_BATCHES = 8
# How often an idle consumer looks at the clock (batch deadline, stop request).
IDLE_POLL_S = 0.02
_LENGTH = struct.Struct(">I")

Frame = tuple[int, int, PreparedBatch]  # messages, last delivery tag, the batch
Delivery = tuple[Basic.Deliver, BasicProperties, bytes]


@dataclass(frozen=True, slots=True)
class Consuming:
    """The worker is connected, its queue declared and bound: deliveries may come."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker stops because of the broker; ``reason`` is fit for the collector's log."""

    reason: str


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


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_frame_blocking(stream: IO[bytes]) -> Any:
    """The next frame's object, or None at end of stream (the worker's side).

    ``stream`` may be unbuffered, which returns short reads from a pipe.
    """
    head = _read_exactly(stream, _LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    data = _read_exactly(stream, length)
    return pickle.loads(data) if len(data) == length else None


# -- decoding -------------------------------------------------------------------------------


def decode_incoming(delivery: Delivery, tap: TapConfig, received_ns: int) -> Decoded:
    """Decode one delivered AMQP message (no I/O); whatever goes wrong is a rejection."""
    method, _props, body = delivery
    try:
        return _decode(delivery, tap, received_ns)
    except Exception as exc:
        reason = f"message could not be decoded: {type(exc).__name__}: {exc}"
        label = f"amqp:{method.exchange or tap.exchange}"
        return Decoded(rejections=[(0, Rejection(label, reason, sample_of(body)))])


def _decode(delivery: Delivery, tap: TapConfig, received_ns: int) -> Decoded:
    method, props, body = delivery
    stamp = props.timestamp  # AMQP timestamps are whole seconds
    return decode_amqp(
        body,
        dict(props.headers or {}),
        props.content_type or "",
        exchange=method.exchange or tap.exchange,
        routing_key=method.routing_key or "",
        message_id=props.message_id or "",
        timestamp_ns=int(stamp) * 1_000_000_000 if stamp else 0,
        received_ns=received_ns,
        type_field=tap.type_field,
        max_bytes=tap.max_message_bytes,
    )


def prepare_messages(messages: list[Delivery], tap: TapConfig) -> Frame:
    """Decode a batch of deliveries into the frame the collector commits."""
    batch = RecordBatch()
    now = time.time_ns()
    last = 0
    for delivery in messages:
        decoded = decode_incoming(delivery, tap, now)
        batch.events.extend(decoded.events)
        batch.rejections.extend(r for _, r in decoded.rejections)
        last = max(last, delivery[0].delivery_tag or 0)
    return len(messages), last, prepare_batch(batch)


# -- the worker -----------------------------------------------------------------------------


def _ack(channel: BlockingChannel, tag: int) -> None:
    try:
        channel.basic_ack(tag, multiple=True)
    except Exception as exc:  # channel closed by a broker restart: the broker redelivers
        log.info("ack after commit failed (%s); the broker redelivers, the store dedups", exc)


def _relay_acks(
    control: IO[bytes], connection: pika.BlockingConnection, channel: BlockingChannel
) -> threading.Event:
    """Read delivery tags from the collector; set the returned event when it closes the pipe."""
    closed = threading.Event()

    def relay() -> None:
        try:
            while (tag := read_frame_blocking(control)) is not None:
                connection.add_callback_threadsafe(lambda t=int(tag): _ack(channel, t))
        except Exception as exc:
            log.info("reading acknowledgements failed: %s", exc)
        closed.set()

    threading.Thread(target=relay, name="sagalens-tap-acks", daemon=True).start()
    return closed


def _consume(
    tap: TapConfig,
    channel: BlockingChannel,
    out: IO[bytes],
    stop: threading.Event,
) -> None:
    """Fill batches up to ``batch_size`` or ``batch_ms`` and hand each over, until ``stop``."""
    wait_s = tap.batch_ms / 1000
    messages: list[Delivery] = []
    deadline = 0.0
    for method, props, body in channel.consume(
        tap.queue, auto_ack=False, inactivity_timeout=min(IDLE_POLL_S, wait_s or IDLE_POLL_S)
    ):
        if stop.is_set():
            return
        if method is not None:
            if not messages:
                deadline = time.monotonic() + wait_s
            messages.append((method, props, body))
            if len(messages) < tap.batch_size and time.monotonic() < deadline:
                continue
        elif not messages or time.monotonic() < deadline:
            continue
        frame = prepare_messages(messages, tap)
        messages = []
        out.write(encode_frame(frame))
        out.flush()


def describe(exc: BaseException) -> str:
    """Why the broker connection failed or ended, in the broker's own words where it gave any."""
    errors = pika.exceptions
    if isinstance(exc, errors.ProbableAuthenticationError | errors.AuthenticationError):
        return "the broker refused the user name or password"
    if isinstance(exc, errors.ChannelClosedByBroker):
        return f"the broker refused: {exc.reply_text}"
    if isinstance(exc, errors.ConnectionClosedByBroker):
        return f"the broker closed the connection: {exc.reply_text} ({exc.reply_code})"
    if isinstance(exc, errors.ProbableAccessDeniedError):
        return f"the broker refused access: {exc}"
    if isinstance(exc, errors.AMQPConnectionError):
        cause = exc  # pika wraps the socket's error in one or two of its own
        while cause.args and isinstance(cause.args[0], BaseException):
            cause = cause.args[0]
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot connect: {cause.strerror}"
        return f"cannot connect: {cause!r}" if cause is not exc else "connection lost"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def serve(control: IO[bytes], out: IO[bytes]) -> int:
    """Run one tap worker; the exit status tells the collector why it stopped."""
    tap = read_frame_blocking(control)
    if not isinstance(tap, TapConfig):
        log.error("tap worker: expected a TapConfig on standard input")
        return 2
    params = pika.URLParameters(tap.url)
    params.client_properties = {"connection_name": tap.name}
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        # Room for several batches: the broker keeps sending while earlier ones commit.
        channel.basic_qos(prefetch_count=max(WINDOW_BATCHES * tap.batch_size, 100))
        channel.queue_declare(tap.queue, durable=tap.durable, auto_delete=not tap.durable)
        for key in tap.bindings:
            channel.queue_bind(tap.queue, tap.exchange, routing_key=key)
        out.write(encode_frame(Consuming()))
        out.flush()
        stop = _relay_acks(control, connection, channel)
        _consume(tap, channel, out, stop)
        return 0  # the collector closed the pipe: a clean stop
    finally:
        if connection.is_open:
            try:
                connection.close()
            except Exception as exc:
                log.info("closing the broker connection failed: %s", exc)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # Unbuffered: the thread that reads acknowledgements blocks in a read of this pipe, and a
    # buffered reader's lock held by that thread aborts the interpreter at exit.
    control = os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    out = sys.stdout.buffer
    try:
        code = serve(control, out)
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:
        # The collector logs the reason once for both workers and says when it reconnects.
        try:
            out.write(encode_frame(Failed(describe(exc))))
            out.flush()
        except OSError:
            log.warning("tap worker stopped: %s", describe(exc))
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    # Run the module's importable copy, so the frames it pickles (Consuming, Failed) name
    # classes the collector can load, not this __main__ module's.
    from collector.receivers.rabbitmq_worker import main as run_worker

    run_worker()
