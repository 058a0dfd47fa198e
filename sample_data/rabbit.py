"""The choreographed shop on a real RabbitMQ: one topic exchange, one queue per subscription.

Every service publishes its CloudEvents (AMQP binding, structured mode) to the exchange with
the event type as routing key, and consumes from its own queues
(``<exchange>.stock-orders``, ...), bound to the event types it reacts to. A message is
acknowledged after its handler ran. sagalens sees the same events through its broker tap,
which binds a queue of its own to the exchange and never touches the services' queues.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import socket
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiormq
import aiormq.abc

from sample_data.choreographed import QUEUES, Shop

log = logging.getLogger(__name__)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE = "sagalens.demo.shop"
# The exchange goes away with the last queue bound to it: the demo leaves nothing behind.
EXCHANGE_OPTIONS: dict[str, Any] = {
    "exchange_type": "topic",
    "durable": False,
    "auto_delete": True,
}


def demo_exchange(http_port: int) -> str:
    """The exchange of the demo whose collector takes OTLP on ``http_port``.

    One per demo, so demos on one broker (a second one on other ports, a test run beside
    a demo) never take each other's events.
    """
    return f"{EXCHANGE}.{http_port}"


CONTENT_TYPE = "application/cloudevents+json"
CALL_TIMEOUT_S = 10.0


def reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether something listens at the AMQP URL's host and port."""
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 5672), timeout
        ).close()
    except OSError:
        return False
    return True


def declare_tap_queue(url: str, exchange: str, tap_queue: str) -> None:
    """Declare the exchange and a non-durable tap queue bound to everything on it.

    The demo does this before the collector starts, so the tap's queue holds every event
    from the first one on, however long the tap takes to connect.
    """

    async def declare() -> None:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            await channel.exchange_declare(exchange, **EXCHANGE_OPTIONS)
            # as the tap declares it with durable: false
            await channel.queue_declare(tap_queue, durable=False, auto_delete=True)
            await channel.queue_bind(tap_queue, exchange, routing_key="#")
        finally:
            await connection.close()

    asyncio.run(declare())


class RabbitBus:
    """The ``Bus`` of a ``Shop`` on RabbitMQ; once the shop is made, ``start`` connects."""

    def __init__(self, url: str = DEFAULT_URL, exchange: str = EXCHANGE) -> None:
        self.url = url
        self.exchange = exchange
        self.delivered = 0
        self.errors = 0
        self._shop: Shop | None = None
        self._loop = asyncio.new_event_loop()
        self._io = threading.Thread(target=self._loop.run_forever, name="sample-amqp", daemon=True)
        self._inbox: queue.Queue[tuple[str, aiormq.abc.DeliveredMessage] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="sample-shop", daemon=True)
        self._connection: aiormq.abc.AbstractConnection | None = None
        self._publisher: aiormq.abc.AbstractChannel | None = None
        self._consumer: aiormq.abc.AbstractChannel | None = None

    def queue_name(self, subscription: str) -> str:
        return f"{self.exchange}.{subscription}"

    def attach(self, shop: Shop) -> None:
        self._shop = shop

    def start(self) -> RabbitBus:
        """Connect, declare the exchange and the services' queues, start consuming."""
        assert self._shop is not None, "Shop(telemetry, bus) first"
        self._io.start()
        try:
            self._call(self._open())
        except BaseException:
            self._stop_loop()
            raise
        self._worker.start()
        return self

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    async def _open(self) -> None:
        self._connection = await aiormq.connect(
            self.url, client_properties={"connection_name": "sagalens demo shop"}
        )
        self._publisher = await self._connection.channel()
        await self._publisher.exchange_declare(self.exchange, **EXCHANGE_OPTIONS)
        self._consumer = await self._connection.channel()
        await self._consumer.basic_qos(prefetch_count=200)
        for subscription, handlers in QUEUES.items():
            name = self.queue_name(subscription)
            # the demo's queues go away with the demo
            await self._consumer.queue_declare(name, auto_delete=True)
            for event_type in handlers:
                await self._consumer.queue_bind(name, self.exchange, routing_key=event_type)
            await self._consumer.basic_consume(
                name, functools.partial(self._received, subscription)
            )

    async def _received(self, subscription: str, message: aiormq.abc.DeliveredMessage) -> None:
        self._inbox.put((subscription, message))

    def _work(self) -> None:
        """The services' consumer loop: handle, then acknowledge, one message at a time."""
        while (item := self._inbox.get()) is not None:
            subscription, message = item
            try:
                assert self._shop is not None
                self._shop.deliver(subscription, json.loads(message.body))
                self.delivered += 1
            except Exception as exc:  # a sample service must not die on one message
                self.errors += 1
                log.warning("sample shop: %s could not handle a message: %s", subscription, exc)
            try:
                assert self._consumer is not None and message.delivery_tag is not None
                self._call(self._ack(message.delivery_tag))
            except Exception as exc:
                self.errors += 1
                log.warning("sample shop: ack failed: %s", exc)

    async def _ack(self, tag: int) -> None:
        assert self._consumer is not None
        await self._consumer.basic_ack(tag)

    def publish(self, event: dict[str, Any]) -> None:
        """Publish one CloudEvent (structured mode), routing key = its type; waits for the confirm."""
        assert self._publisher is not None, "RabbitBus.start() first"
        properties = aiormq.spec.Basic.Properties(
            content_type=CONTENT_TYPE, message_id=str(event["id"]), delivery_mode=2
        )
        self._call(
            self._publisher.basic_publish(
                json.dumps(event).encode(),
                exchange=self.exchange,
                routing_key=str(event["type"]),
                properties=properties,
            )
        )

    def settle(self) -> None:
        """Nothing to do: the services react as the broker delivers."""
        return None

    def close(self) -> None:
        """Stop consuming, close the connection and the I/O thread."""
        if self._worker.is_alive():
            self._inbox.put(None)
            self._worker.join(CALL_TIMEOUT_S)
        if self._connection is not None and self._io.is_alive():
            try:
                self._call(self._connection.close())
            except Exception as exc:
                log.warning("sample shop: closing the AMQP connection: %s", exc)
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._io.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._io.join(CALL_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()
