"""Seeded sample sagas as OTLP JSON, built with the ``saga.*`` attribute convention.

``sample_sagas(now_ns)`` returns one ``/v1/traces`` request body holding:

- ``order-1001`` completed: four services, two traces joined by a message hop (a PRODUCER span
  in the orders trace, a linked CONSUMER span in the shipping trace), ``charge_payment`` retried.
- ``order-1002`` compensated: ``charge_payment`` fails, ``release_inventory`` undoes the
  reservation.
- ``order-1003`` compensation missing: ``ship_order`` fails, the payment is refunded but the
  reservation is never released.
- ``order-1004`` stalled: started 40 minutes before ``now`` and never heard from again.
- a unicode saga with a very long key and type name, completed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

SEC = 1_000_000_000
MIN = 60 * SEC
INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
STATUS_OK, STATUS_ERROR = 1, 2

UNICODE_KEY = "commande-ünïcødé-日本語-" + "x" * 120
UNICODE_TYPE = "Réservation—Voyage✈️"


def _hex(seed: str, size: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[: 2 * size]


def trace_id(seed: str) -> str:
    """A stable 16-byte hex trace id for a seed."""
    return _hex("t" + seed, 16)


def span_id(seed: str) -> str:
    """A stable 8-byte hex span id for a seed."""
    return _hex("s" + seed, 8)


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items()]


@dataclass
class TraceBuilder:
    """Collects spans per service and renders an OTLP JSON ExportTraceServiceRequest."""

    spans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def span(
        self,
        service: str,
        trace: str,
        sid: str,
        name: str,
        start_ns: int,
        end_ns: int,
        *,
        kind: int = INTERNAL,
        parent: str = "",
        error: str = "",
        links: list[tuple[str, str]] | None = None,
        **attributes: Any,
    ) -> str:
        """Add one span; keyword attributes use ``__`` for dots (``saga__id`` -> ``saga.id``)."""
        span: dict[str, Any] = {
            "traceId": trace,
            "spanId": sid,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(end_ns),
            "attributes": _attrs({k.replace("__", "."): v for k, v in attributes.items()}),
            "status": {"code": STATUS_ERROR, "message": error} if error else {"code": STATUS_OK},
        }
        if parent:
            span["parentSpanId"] = parent
        if links:
            span["links"] = [{"traceId": t, "spanId": s} for t, s in links]
        self.spans.setdefault(service, []).append(span)
        return sid

    def step(
        self,
        service: str,
        trace: str,
        saga: str,
        name: str,
        start_ns: int,
        end_ns: int,
        *,
        step_type: str = "action",
        compensates: str = "",
        error: str = "",
        parent: str = "",
        kind: int = SERVER,
        links: list[tuple[str, str]] | None = None,
        attempt: int = 0,
    ) -> str:
        """Add a saga step span with the ``saga.*`` convention."""
        extra: dict[str, Any] = {"saga.id": saga, "saga.step": name, "saga.step.type": step_type}
        if compensates:
            extra["saga.compensates"] = compensates
        if attempt:
            extra["saga.step.attempt"] = attempt
        sid = span_id(f"{saga}/{name}/{start_ns}")
        self.span(
            service,
            trace,
            sid,
            name,
            start_ns,
            end_ns,
            kind=kind,
            parent=parent,
            error=error,
            links=links,
            **{k.replace(".", "__"): v for k, v in extra.items()},
        )
        return sid

    def request(self) -> dict[str, Any]:
        """The OTLP JSON body for POST /v1/traces."""
        return {
            "resourceSpans": [
                {
                    "resource": {"attributes": _attrs({"service.name": service})},
                    "scopeSpans": [{"scope": {"name": "sagalens.tests"}, "spans": spans}],
                }
                for service, spans in self.spans.items()
            ]
        }


def _root(
    b: TraceBuilder,
    service: str,
    trace: str,
    saga: str,
    saga_type: str,
    start: int,
    end: int,
    error: str = "",
) -> str:
    sid = span_id(f"{saga}/root")
    b.span(
        service,
        trace,
        sid,
        f"{saga_type} saga",
        start,
        end,
        kind=SERVER,
        error=error,
        saga__id=saga,
        saga__name=saga_type,
    )
    return sid


def completed_saga(
    b: TraceBuilder, t0: int, saga: str = "order-1001", saga_type: str = "OrderSaga"
) -> None:
    """Four services over two traces with a message hop and a retried payment."""
    ta, tb = trace_id(saga + "a"), trace_id(saga + "b")
    root = _root(b, "orders", ta, saga, saga_type, t0, t0 + 9 * SEC)
    b.step("inventory", ta, saga, "reserve_inventory", t0 + SEC // 10, t0 + SEC, parent=root)
    b.step(
        "payment",
        ta,
        saga,
        "charge_payment",
        t0 + 1 * SEC,
        t0 + 2 * SEC,
        parent=root,
        error="card network timeout",
    )
    b.step(
        "payment", ta, saga, "charge_payment", t0 + 2 * SEC, t0 + 3 * SEC, parent=root, attempt=2
    )
    producer = span_id(saga + "/publish")
    b.span(
        "orders",
        ta,
        producer,
        "orders.shipping publish",
        t0 + 3 * SEC,
        t0 + 3 * SEC + SEC // 5,
        kind=PRODUCER,
        parent=root,
        saga__id=saga,
        messaging__system="rabbitmq",
        messaging__destination__name="orders.shipping",
    )
    b.step(
        "shipping",
        tb,
        saga,
        "ship_order",
        t0 + 4 * SEC,
        t0 + 8 * SEC,
        kind=CONSUMER,
        links=[(ta, producer)],
    )


def compensated_saga(b: TraceBuilder, t0: int, saga: str = "order-1002") -> None:
    """The payment fails; the reservation is released."""
    t = trace_id(saga)
    root = _root(b, "orders", t, saga, "OrderSaga", t0, t0 + 5 * SEC, error="payment declined")
    b.step("inventory", t, saga, "reserve_inventory", t0 + SEC // 10, t0 + SEC, parent=root)
    b.step(
        "payment",
        t,
        saga,
        "charge_payment",
        t0 + SEC,
        t0 + 2 * SEC,
        parent=root,
        error="card declined: insufficient funds",
    )
    b.step(
        "inventory",
        t,
        saga,
        "release_inventory",
        t0 + 3 * SEC,
        t0 + 4 * SEC,
        parent=root,
        step_type="compensation",
        compensates="reserve_inventory",
    )


def missing_compensation_saga(b: TraceBuilder, t0: int, saga: str = "order-1003") -> None:
    """Shipping fails; the payment is refunded but the reservation is never released."""
    t = trace_id(saga)
    root = _root(b, "orders", t, saga, "OrderSaga", t0, t0 + 7 * SEC, error="shipping failed")
    b.step("inventory", t, saga, "reserve_inventory", t0 + SEC // 10, t0 + SEC, parent=root)
    b.step("payment", t, saga, "charge_payment", t0 + SEC, t0 + 2 * SEC, parent=root)
    b.step(
        "shipping",
        t,
        saga,
        "ship_order",
        t0 + 2 * SEC,
        t0 + 3 * SEC,
        parent=root,
        error="carrier rejected the address",
    )
    b.step(
        "payment",
        t,
        saga,
        "refund_payment",
        t0 + 4 * SEC,
        t0 + 5 * SEC,
        parent=root,
        step_type="compensation",
        compensates="charge_payment",
    )


def stalled_saga(b: TraceBuilder, t0: int, saga: str = "order-1004") -> None:
    """Reserved, then silence: no further step and no end."""
    t = trace_id(saga)
    b.step("inventory", t, saga, "reserve_inventory", t0, t0 + SEC)
    b.span(
        "orders",
        t,
        span_id(saga + "/start"),
        "OrderSaga start",
        t0 - SEC // 10,
        t0 - SEC // 20,
        kind=INTERNAL,
        saga__id=saga,
    )


def unicode_saga(b: TraceBuilder, t0: int) -> None:
    """A completed saga with a unicode, very long key and type."""
    saga = UNICODE_KEY
    t = trace_id(saga)
    root = _root(b, "réservations", t, saga, UNICODE_TYPE, t0, t0 + 3 * SEC)
    b.step(
        "hôtel-服务",
        t,
        saga,
        "réserver_chambre_" + "très_long_" * 8,
        t0 + SEC // 10,
        t0 + 2 * SEC,
        parent=root,
    )


def sample_sagas(now_ns: int) -> dict[str, Any]:
    """One /v1/traces body with the five sample sagas, times relative to ``now_ns``."""
    b = TraceBuilder()
    completed_saga(b, now_ns - 20 * MIN)
    compensated_saga(b, now_ns - 15 * MIN)
    missing_compensation_saga(b, now_ns - 10 * MIN)
    stalled_saga(b, now_ns - 40 * MIN)
    unicode_saga(b, now_ns - 5 * MIN)
    return b.request()


EXPECTED_STATUS = {
    "order-1001": "completed",
    "order-1002": "compensated",
    "order-1003": "compensation_missing",
    "order-1004": "stalled",
    UNICODE_KEY: "completed",
}
