"""Choreographed sample system: four services reacting to each other's events.

Nobody orchestrates. ``checkout`` places the order, ``stock`` reserves and releases
inventory, ``billing`` charges and refunds, ``delivery`` ships. Every service publishes
CloudEvents (``correlationid`` and W3C ``traceparent`` extensions) on a bus and consumes
from its own queues:

- ``LocalBus``: in-process; every event also goes to an ``EventSink`` (the collector's
  ``POST /v1/events`` in batch mode, or a list for the recorded files);
- ``RabbitBus`` (``sample_data.rabbit``): a RabbitMQ topic exchange, one queue per
  subscription, routing key = event type; sagalens sees the events through its broker tap.

Only ``checkout`` and ``billing`` are traced: their consumer spans start new traces linked
to the producer span named by the incoming ``traceparent``, so the collector gets partial
traces joined by span links, as in real brokered systems. The untraced services forward
the ``traceparent`` they received. Every consumer is idempotent on the event id, so a
redelivered event (one of the injected faults) changes nothing.

Run it against a collector::

    python -m sample_data.choreographed --collector http://127.0.0.1:4318 --sagas 20
"""

from __future__ import annotations

import argparse
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.propagate import extract, inject
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)

from sample_data.outcomes import Expected, add_faults_argument, draw_outcome, plan_fields, run_tag
from sample_data.publish import BatchPoster, EventSink, event_ns, rfc3339
from sample_data.telemetry import SagaClock, Telemetry, otlp_http_exporter

SYSTEM = "choreographed"
TOPIC = "order-events"
# event type a step publishes when it succeeds / when it fails
OK = {
    "reserve": "InventoryReserved",
    "charge": "PaymentCharged",
    "ship": "OrderShipped",
    "release": "InventoryReleased",
    "refund": "PaymentRefunded",
}
FAILED = {
    "charge": "PaymentDeclined",
    "ship": "ShippingFailed",
    "release": "InventoryReleaseFailed",
    "refund": "PaymentRefundFailed",
}
UNDO = {"reserve": "release", "charge": "refund"}
# each service's queues: queue -> event type -> handler
QUEUES: dict[str, dict[str, str]] = {
    "stock-orders": {
        "OrderPlaced": "stock_reserve",
        "PaymentDeclined": "stock_release",
        "ShippingFailed": "stock_release",
    },
    "billing-orders": {"InventoryReserved": "billing_charge"},
    "billing-returns": {"ShippingFailed": "billing_refund"},
    "delivery-orders": {"PaymentCharged": "delivery_ship"},
    "checkout-updates": {
        "PaymentDeclined": "checkout_close",
        "ShippingFailed": "checkout_close",
        "OrderShipped": "checkout_close",
    },
}
MAX_ORDERS = 10_000  # orders the services remember (fault plans, handled event ids)


@dataclass(frozen=True, slots=True)
class Plan:
    """Which step fails or hangs, which compensation is never run or keeps failing."""

    outcome: str
    fail_at: str = ""
    hang_at: str = ""
    skip: str = ""
    broken: str = ""
    flaky: str = ""  # step whose first attempt hits a transient error and is retried
    duplicate: str = ""  # event type its publisher sends twice (a lost publisher confirm)

    @property
    def expected_step(self) -> str:
        if self.outcome == "compensation_missing":
            return OK[next(a for a, c in UNDO.items() if c == self.skip)]
        if self.broken:
            return FAILED[self.broken]
        return OK[self.hang_at] if self.hang_at else ""


def draw_plan(rng: random.Random, outcome: str) -> Plan:
    """A concrete plan for an outcome."""
    return Plan(outcome, **plan_fields(rng, outcome))


class Bus(Protocol):
    """Where the services publish; it hands each event to ``Shop.deliver`` once per queue."""

    def attach(self, shop: Shop) -> None: ...

    def publish(self, event: dict[str, Any]) -> None: ...

    def settle(self) -> None: ...


class LocalBus:
    """In-process bus: FIFO delivery, run to the end by ``settle``; every event also to a sink."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.shop: Shop | None = None
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()

    def attach(self, shop: Shop) -> None:
        self.shop = shop

    def publish(self, event: dict[str, Any]) -> None:
        self.sink.publish(event)
        for queue, handlers in QUEUES.items():
            if event["type"] in handlers:
                self._pending.append((queue, event))

    def settle(self) -> None:
        while self._pending and self.shop is not None:
            queue, event = self._pending.popleft()
            self.shop.deliver(queue, event)


@dataclass(slots=True)
class _Order:
    """What the services know of one order: its fault plan and the events they handled."""

    order_id: str
    plan: Plan
    rng: random.Random
    handled: set[tuple[str, str]] = field(default_factory=set)


class Shop:
    """The four services, reacting to events from ``bus`` (a ``LocalBus`` or ``RabbitBus``)."""

    def __init__(self, telemetry: Telemetry, bus: Bus) -> None:
        self.t = telemetry
        self.bus = bus
        self._orders: OrderedDict[str, _Order] = OrderedDict()
        self._lock = threading.Lock()
        bus.attach(self)

    def play(
        self, rng: random.Random, order_id: str, outcome: str, start_ns: int
    ) -> tuple[str, Expected]:
        """Place one order planned to end as ``outcome``; its saga key and ground truth."""
        plan = draw_plan(rng, outcome)
        order = _Order(order_id, plan, random.Random(rng.getrandbits(64)))
        with self._lock:
            self._orders[order_id] = order
            while len(self._orders) > MAX_ORDERS:
                self._orders.popitem(last=False)
        _Reaction(self, order, start_ns).checkout_place()
        self.bus.settle()
        retried = OK[plan.flaky] if plan.flaky else ""
        return saga_key(order_id), Expected(
            SYSTEM, plan.outcome, plan.expected_step, order_id, retried
        )

    def deliver(self, queue: str, event: dict[str, Any]) -> None:
        """Run the handler ``queue`` has for ``event``, once per event id."""
        handler = QUEUES.get(queue, {}).get(str(event.get("type")))
        data = event.get("data")
        order_id = data.get("orderId") if isinstance(data, dict) else None
        with self._lock:
            order = self._orders.get(str(order_id))
            if handler is None or order is None:
                return  # not one of this run's orders (say, left in a queue by an earlier run)
            if (queue, event["id"]) in order.handled:
                return  # a redelivery: every consumer is idempotent on the event id
            order.handled.add((queue, event["id"]))
        getattr(_Reaction(self, order, event_ns(event)), handler)(event)


class _Reaction:
    """One service reacting to one event of one order; its clock starts at the event's time."""

    def __init__(self, shop: Shop, order: _Order, start_ns: int) -> None:
        self.t = shop.t
        self.bus = shop.bus
        self.order_id = order.order_id
        self.plan = order.plan
        self.rng = order.rng
        self.clock = SagaClock(start_ns, order.rng)

    def publish(self, source: str, type_: str, cause: dict[str, Any] | None, traceparent: str,
                **data: Any) -> None:  # fmt: skip
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "source": f"/shop/{source}",
            "type": type_,
            "subject": self.order_id,
            "time": rfc3339(self.clock.now),
            "datacontenttype": "application/json",
            "correlationid": self.order_id,
            "data": {"orderId": self.order_id, **data},
        }
        if cause is not None:
            event["causationid"] = cause["id"]
        if traceparent:
            event["traceparent"] = traceparent
        self.bus.publish(event)
        if type_ == self.plan.duplicate:
            self.bus.publish(event)  # the publisher missed its confirm and sent it again

    # ---- tracing helpers of the traced services

    def consume(self, service: str, queue: str, event: dict[str, Any]) -> Span:
        """A consumer span in a new trace, linked to the producer named by ``traceparent``.

        Each subscription has its own queue bound to the topic, so its spans have their own
        name (``process billing-orders``), as the messaging conventions name them.
        """
        links = []
        if event.get("traceparent"):
            producer = get_current_span(extract({"traceparent": event["traceparent"]}))
            if producer.get_span_context().is_valid:
                links.append(Link(producer.get_span_context()))
        return self.t.tracer(service).start_span(
            f"process {queue}",
            kind=SpanKind.CONSUMER,
            links=links,
            start_time=self.clock.tick(2, 60),
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": event["id"],
                "cloudevents.event_type": event["type"],
                "order.id": self.order_id,
            },
        )

    def produce(self, service: str, parent: Span, type_: str, cause: dict[str, Any] | None,
                **data: Any) -> None:  # fmt: skip
        """A producer span under ``parent`` and the event it sends, carrying its traceparent."""
        producer = self.t.tracer(service).start_span(
            f"publish {TOPIC}",
            context=set_span_in_context(parent),
            kind=SpanKind.PRODUCER,
            start_time=self.clock.tick(1, 10),
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "publish",
                "messaging.destination.name": TOPIC,
                "cloudevents.event_type": type_,
            },
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=set_span_in_context(producer))
        self.publish(service, type_, cause, carrier.get("traceparent", ""), **data)
        producer.end(end_time=self.clock.tick(1, 4))

    def internal(self, service: str, parent: Span, name: str, kind: SpanKind,
                 attrs: dict[str, Any], error: str = "") -> None:  # fmt: skip
        span = self.t.tracer(service).start_span(
            name, context=set_span_in_context(parent), kind=kind,
            start_time=self.clock.tick(1, 5), attributes=attrs,
        )  # fmt: skip
        end = self.clock.tick(5, 250)
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end)

    # ---- checkout (traced)

    def checkout_place(self) -> None:
        tracer = self.t.tracer("checkout")
        server = tracer.start_span(
            "POST /orders",
            kind=SpanKind.SERVER,
            start_time=self.clock.now,
            attributes={
                "http.request.method": "POST",
                "http.route": "/orders",
                "http.response.status_code": 202,
                "order.id": self.order_id,
            },
        )
        self.internal("checkout", server, "INSERT orders", SpanKind.CLIENT,
                      {"db.system.name": "postgresql", "db.namespace": "checkout"})  # fmt: skip
        items = self.rng.randint(1, 4)
        self.produce("checkout", server, "OrderPlaced", None, items=items,
                     total=round(self.rng.uniform(9, 400), 2))  # fmt: skip
        server.end(end_time=self.clock.tick(1, 5))

    def checkout_close(self, event: dict[str, Any]) -> None:
        span = self.consume("checkout", "checkout-updates", event)
        status = "shipped" if event["type"] == "OrderShipped" else "cancelled"
        self.internal("checkout", span, "UPDATE orders", SpanKind.CLIENT,
                      {"db.system.name": "postgresql", "order.status": status})  # fmt: skip
        span.end(end_time=self.clock.tick(1, 5))

    # ---- stock (not traced: forwards the traceparent it got)

    def stock_reserve(self, event: dict[str, Any]) -> None:
        self.clock.tick(20, 300)
        if self.plan.flaky == "reserve":
            self.clock.tick(300, 900)  # a deadlock on the stock table, retried
        self.publish("stock", OK["reserve"], event, event.get("traceparent", ""),
                     warehouse=self.rng.choice(("BER-1", "MUC-2", "HAM-1")))  # fmt: skip

    def stock_release(self, event: dict[str, Any]) -> None:
        if self.plan.skip == "release":
            return  # the release handler is missing: the reservation stays forever
        # after a failed shipment billing refunds first; stock releases once that is under way
        self.clock.tick(400, 700) if event["type"] == FAILED["ship"] else self.clock.tick(20, 300)
        if self.plan.broken == "release":
            self.clock.tick(500, 3000)  # it retried a few times before giving up
            self.publish("stock", FAILED["release"], event, event.get("traceparent", ""),
                         reason="reservation ledger locked")  # fmt: skip
            return
        self.publish("stock", OK["release"], event, event.get("traceparent", ""))

    # ---- billing (traced)

    def billing_charge(self, event: dict[str, Any]) -> None:
        span = self.consume("billing", "billing-orders", event)
        if self.plan.hang_at == "charge":
            return  # the payment provider call never returns; the span is never exported
        declined = self.plan.fail_at == "charge"
        if self.plan.flaky == "charge":  # the provider times out once; billing retries
            self.internal(
                "billing", span, "POST /v1/charges", SpanKind.CLIENT,
                {"http.request.method": "POST", "server.address": "psp.example.net",
                 "http.response.status_code": 504},
                error="payment provider timed out",
            )  # fmt: skip
        self.internal(
            "billing", span, "POST /v1/charges", SpanKind.CLIENT,
            {"http.request.method": "POST", "server.address": "psp.example.net",
             "http.response.status_code": 402 if declined else 201},
        )  # fmt: skip
        if declined:
            self.produce("billing", span, FAILED["charge"], event, reason="card declined")
        else:
            self.produce("billing", span, OK["charge"], event,
                         amount=round(self.rng.uniform(9, 400), 2))  # fmt: skip
        span.end(end_time=self.clock.tick(1, 5))

    def billing_refund(self, event: dict[str, Any]) -> None:
        if self.plan.skip == "refund":
            return  # billing never subscribed to ShippingFailed: the money is kept
        span = self.consume("billing", "billing-returns", event)
        broken = self.plan.broken == "refund"
        self.internal(
            "billing", span, "POST /v1/refunds", SpanKind.CLIENT,
            {"http.request.method": "POST", "server.address": "psp.example.net",
             "http.response.status_code": 502 if broken else 201},
            error="payment provider rejected the refund" if broken else "",
        )  # fmt: skip
        if broken:
            self.produce("billing", span, FAILED["refund"], event,
                         reason="payment provider rejected the refund")  # fmt: skip
            span.set_status(Status(StatusCode.ERROR, "refund failed"))
        else:
            self.produce("billing", span, OK["refund"], event)
        span.end(end_time=self.clock.tick(1, 5))

    # ---- delivery (not traced)

    def delivery_ship(self, event: dict[str, Any]) -> None:
        if self.plan.hang_at == "ship":
            return  # the label printer queue is stuck: nothing is ever published
        self.clock.tick(100, 900)
        if self.plan.flaky == "ship":
            self.clock.tick(500, 1500)  # the carrier API refused once; delivery tried again
        if self.plan.fail_at == "ship":
            self.publish("delivery", FAILED["ship"], event, event.get("traceparent", ""),
                         reason="no carrier accepted the parcel")  # fmt: skip
        else:
            self.publish("delivery", OK["ship"], event, event.get("traceparent", ""),
                         carrier=self.rng.choice(("DHL", "UPS", "GLS")))  # fmt: skip


def saga_key(order_id: str) -> str:
    """The saga key sagalens derives under DEMO_CONFIG (business key ``order.id``)."""
    return f"order.id:{order_id}"


def run_choreographed(
    shop: Shop, n: int, *, seed: int = 0, start_ns: int | None = None, spacing_ms: int = 400,
    faults: Mapping[str, float] | None = None,
) -> dict[str, Expected]:  # fmt: skip
    """Play ``n`` seeded orders; return saga key -> expected status (keys as under DEMO_CONFIG)."""
    rng = random.Random(f"choreographed:{seed}")
    tag = run_tag(rng)
    if start_ns is None:
        start_ns = time.time_ns() - (n * spacing_ms + 8_000) * 1_000_000
    truth: dict[str, Expected] = {}
    for i in range(n):
        outcome = draw_outcome(rng, faults)
        key, expected = shop.play(
            rng, f"B-{tag}-{i:05d}", outcome, start_ns + i * spacing_ms * 1_000_000
        )
        truth[key] = expected
    return truth


def main(argv: list[str] | None = None) -> None:
    """Command line: play seeded choreographed orders against a collector."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collector", default="http://127.0.0.1:4318")
    parser.add_argument("--token", default="")
    parser.add_argument("--sagas", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    add_faults_argument(parser)
    args = parser.parse_args(argv)
    telemetry = Telemetry(otlp_http_exporter(args.collector, args.token))
    poster = BatchPoster(args.collector, args.token)
    truth = run_choreographed(
        Shop(telemetry, LocalBus(poster)), args.sagas, seed=args.seed, faults=args.faults
    )
    poster.flush()
    poster.close()
    telemetry.shutdown()
    for key, expected in truth.items():
        print(f"{key}  {expected.status}  {expected.step}")


if __name__ == "__main__":
    main()
