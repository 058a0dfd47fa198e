"""Orchestrated sample system: an OrderSaga orchestrator driving inventory, payments, shipping.

The orchestrator and the three services are in-process functions, each traced by its own
``TracerProvider`` (see ``Telemetry``) and called with W3C trace context propagated through
a header dict, as an HTTP call would. Half of the sagas follow the ``saga.*`` span
convention; the other half look like a Temporal workflow traced by the Temporal
interceptor (``StartActivity:ReserveInventory`` / ``RunActivity:...`` with
``temporalWorkflowID``), so both identity rules are exercised.

Run it against a collector::

    python -m sample_data.orchestrated --collector http://127.0.0.1:4318 --sagas 20
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from sample_data.outcomes import Expected, draw_outcome, plan_fields, run_tag
from sample_data.telemetry import SagaClock, Telemetry, otlp_grpc_exporter, otlp_http_exporter

SYSTEM = "orchestrated"
SAGA_TYPE = "OrderSaga"
ORCHESTRATOR = "order-orchestrator"
API = "order-api"
FORWARD = ("reserve", "charge", "ship")
UNDO = {"reserve": "release", "charge": "refund"}
SERVICE = {
    "reserve": "inventory",
    "release": "inventory",
    "charge": "payments",
    "refund": "payments",
    "ship": "shipping",
}
# step -> (saga.* step name, Temporal activity type, HTTP route the service serves)
NAMES = {
    "reserve": ("reserve_inventory", "ReserveInventory", "POST /inventory/reservations"),
    "release": ("release_inventory", "ReleaseInventory", "DELETE /inventory/reservations/{id}"),
    "charge": ("charge_payment", "ChargePayment", "POST /payments/charges"),
    "refund": ("refund_payment", "RefundPayment", "POST /payments/refunds"),
    "ship": ("ship_order", "ShipOrder", "POST /shipments"),
}
ERRORS = {
    "charge": ("PaymentDeclined", "card declined", 402),
    "ship": ("CarrierUnavailable", "no carrier accepted the parcel", 503),
    "release": ("StockLedgerConflict", "reservation ledger locked", 409),
    "refund": ("RefundRejected", "payment provider rejected the refund", 502),
}
STYLES = ("saga", "temporal")
RETRIES = 3  # attempts of a failing compensation before the orchestrator gives up


@dataclass(frozen=True, slots=True)
class Plan:
    """How one saga goes: which step fails or hangs, which compensation is skipped or broken."""

    outcome: str
    fail_at: str = ""
    hang_at: str = ""
    skip: str = ""  # compensation the orchestrator forgets (the bug we want flagged)
    broken: str = ""  # compensation that keeps failing

    @property
    def expected_step(self) -> str:
        if self.outcome == "compensation_missing":
            return next(a for a, c in UNDO.items() if c == self.skip)
        return self.broken or self.hang_at


def draw_plan(rng: random.Random, outcome: str) -> Plan:
    """A concrete plan for an outcome (which step fails, which undo is missing, ...)."""
    return Plan(outcome, **plan_fields(rng, outcome))


def _error(span: Span, kind: str, message: str, when: int) -> None:
    span.set_status(Status(StatusCode.ERROR, message))
    span.add_event(
        "exception", {"exception.type": kind, "exception.message": message}, timestamp=when
    )


class _Saga:
    """One run of the OrderSaga orchestrator."""

    def __init__(
        self, telemetry: Telemetry, rng: random.Random, order_id: str, plan: Plan, style: str,
        start_ns: int,
    ) -> None:  # fmt: skip
        self.t = telemetry
        self.rng = rng
        self.order_id = order_id
        self.plan = plan
        self.style = style
        self.clock = SagaClock(start_ns, rng)
        self.saga_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.workflow_id = f"order-saga-{order_id}"
        self.run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        self.activities = 0
        self.key = (
            f"saga.id:{self.saga_id}"
            if style == "saga"
            else f"temporal.workflow:{self.workflow_id}"
        )

    @property
    def ids(self) -> dict[str, str]:
        return {"temporalWorkflowID": self.workflow_id, "temporalRunID": self.run_id}

    def name(self, step: str) -> str:
        return NAMES[step][0] if self.style == "saga" else NAMES[step][1]

    # ---- the services: each one is its own traced process as far as the collector knows

    def serve(self, step: str, headers: dict[str, str], fails: bool) -> None:
        """The inventory / payments / shipping handler for one call."""
        service = SERVICE[step]
        tracer = self.t.tracer(service)
        kind, message, code = ERRORS.get(step, ("", "", 500))
        method, route = NAMES[step][2].split(" ", 1)
        start = self.clock.tick(1, 4)
        server = tracer.start_span(
            f"{method} {route}",
            context=extract(headers),
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": code if fails else 200,
                "order.id": self.order_id,
            },
        )
        self.work(step, server)
        end = self.clock.tick(10, 400)
        if fails and code >= 500:
            _error(server, kind, message, end)
        server.end(end_time=end)

    def work(self, step: str, parent: Span) -> None:
        """The database write a service does for a step."""
        service = SERVICE[step]
        db = self.t.tracer(service).start_span(
            "UPDATE stock" if service == "inventory" else f"INSERT {service}",
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            start_time=self.clock.tick(1, 3),
            attributes={"db.system.name": "postgresql", "db.namespace": service},
        )
        db.end(end_time=self.clock.tick(2, 40))

    # ---- the orchestrator

    def call(self, step: str, parent: Context, fails: bool, attempt: int = 1) -> None:
        """Orchestrator -> service call for one step attempt (saga.* convention)."""
        name = self.name(step)
        attrs: dict[str, Any] = {
            "saga.id": self.saga_id,
            "saga.name": SAGA_TYPE,
            "saga.step": name,
            "saga.step.type": "action",
            "order.id": self.order_id,
        }
        if step in UNDO.values():
            attrs["saga.step.type"] = "compensation"
            attrs["saga.compensates"] = self.name(next(a for a, c in UNDO.items() if c == step))
        if attempt > 1:
            attrs["saga.step.attempt"] = attempt
        client = self.t.tracer(ORCHESTRATOR).start_span(
            name, context=parent, kind=SpanKind.CLIENT, start_time=self.clock.tick(),
            attributes=attrs,
        )  # fmt: skip
        headers: dict[str, str] = {}
        inject(headers, context=set_span_in_context(client))
        self.serve(step, headers, fails)
        end = self.clock.tick(1, 5)
        if fails:
            kind, message, _ = ERRORS[step]
            _error(client, kind, message, end)
        client.end(end_time=end)

    def activity(self, step: str, parent: Context, outcomes: list[str]) -> None:
        """Temporal-style activity: one StartActivity, then a RunActivity per attempt.

        Activities run on each service's own task queue, so RunActivity is traced by the
        inventory / payments / shipping worker rather than by the orchestrator.
        """
        self.activities += 1
        name = self.name(step)
        ids = {**self.ids, "temporalActivityID": str(self.activities)}
        when = self.clock.tick()
        scheduled = self.t.tracer(ORCHESTRATOR).start_span(
            f"StartActivity:{name}", context=parent, kind=SpanKind.CLIENT, start_time=when,
            attributes=ids,
        )  # fmt: skip
        scheduled.end(end_time=when + 1_000_000)
        for attempt, outcome in enumerate(outcomes, start=1):
            run = self.t.tracer(SERVICE[step]).start_span(
                f"RunActivity:{name}",
                context=set_span_in_context(scheduled),
                kind=SpanKind.SERVER,
                start_time=self.clock.tick(2, 30 if attempt == 1 else 1000),
                attributes={**ids, "temporalActivityAttempt": attempt},
            )
            if outcome == "hang":
                return  # the worker is stuck: RunActivity never ends, so it is never exported
            self.work(step, run)
            end = self.clock.tick(10, 400)
            if outcome == "failed":
                kind, message, _ = ERRORS[step]
                _error(run, kind, message, end)
            run.end(end_time=end)

    def attempts(self, step: str) -> list[str]:
        if step == self.plan.hang_at:
            return ["hang"]
        if step == self.plan.fail_at:
            return ["failed"]
        if step == self.plan.broken:
            return ["failed"] * RETRIES
        return ["ok"]

    def run(self) -> Expected:
        if self.style == "saga":
            self._run_saga_convention()
        else:
            self._run_temporal()
        return Expected(SYSTEM, self.plan.outcome, self.plan_step_name(), self.order_id)

    def plan_step_name(self) -> str:
        step = self.plan.expected_step
        return self.name(step) if step else ""

    def _steps(self, run_step: Any) -> tuple[bool, bool]:
        """Drive forward steps then compensations; (failed, hung)."""
        done: list[str] = []
        for step in FORWARD:
            outcomes = self.attempts(step)
            run_step(step, outcomes)
            if outcomes == ["hang"]:
                return False, True
            if outcomes[-1] == "failed":
                break
            done.append(step)
        else:
            return False, False
        for step in reversed(done):
            undo = UNDO.get(step)
            if undo is None or undo == self.plan.skip:
                continue
            run_step(undo, self.attempts(undo))
        return True, False

    def _run_saga_convention(self) -> None:
        tracer = self.t.tracer(ORCHESTRATOR)
        root = tracer.start_span(
            SAGA_TYPE, kind=SpanKind.SERVER, start_time=self.clock.now,
            attributes={"saga.id": self.saga_id, "saga.name": SAGA_TYPE, "order.id": self.order_id},
        )  # fmt: skip
        parent = set_span_in_context(root)

        def run_step(step: str, outcomes: list[str]) -> None:
            for attempt, outcome in enumerate(outcomes, start=1):
                if outcome == "hang":
                    return  # the call never returns: neither span ends or is exported
                self.call(step, parent, outcome == "failed", attempt)

        failed, hung = self._steps(run_step)
        if hung:
            return  # the orchestrator's root span never ends either
        end = self.clock.tick()
        if failed:
            _error(root, "SagaFailed", f"order saga failed at {self.name(self.plan.fail_at)}", end)
        root.end(end_time=end)

    def _run_temporal(self) -> None:
        start = self.clock.now
        starter = self.t.tracer(API).start_span(
            f"StartWorkflow:{SAGA_TYPE}", kind=SpanKind.CLIENT, start_time=start,
            attributes={**self.ids, "order.id": self.order_id},
        )  # fmt: skip
        starter.end(end_time=start + 3_000_000)
        worker = self.t.tracer(ORCHESTRATOR)
        when = self.clock.tick(5, 40)
        run = worker.start_span(
            f"RunWorkflow:{SAGA_TYPE}", context=set_span_in_context(starter),
            kind=SpanKind.SERVER, start_time=when, attributes=self.ids,
        )  # fmt: skip
        # the interceptor's RunWorkflow span covers one workflow task, not the whole run
        run.end(end_time=when + 2_000_000)
        parent = set_span_in_context(run)
        failed, hung = self._steps(lambda step, outcomes: self.activity(step, parent, outcomes))
        if hung:
            return
        when = self.clock.tick()
        done = worker.start_span(
            f"CompleteWorkflow:{SAGA_TYPE}", context=parent, start_time=when, attributes=self.ids
        )
        if failed:
            _error(done, "ApplicationError", f"{self.name(self.plan.fail_at)} failed", when)
        done.end(end_time=when + 1_000_000)


def play_order_saga(
    telemetry: Telemetry, rng: random.Random, order_id: str, outcome: str, style: str,
    start_ns: int,
) -> tuple[str, Expected]:  # fmt: skip
    """Run one OrderSaga; return its saga key (as sagalens derives it) and ground truth."""
    saga = _Saga(telemetry, rng, order_id, draw_plan(rng, outcome), style, start_ns)
    return saga.key, saga.run()


def run_orchestrated(
    telemetry: Telemetry, n: int, *, seed: int = 0, start_ns: int | None = None,
    spacing_ms: int = 400,
) -> dict[str, Expected]:  # fmt: skip
    """Play ``n`` seeded sagas; return saga key -> expected status.

    ``start_ns`` is the first saga's start (default: now minus the whole run, so the last
    saga ends about now); sagas start ``spacing_ms`` apart.
    """
    rng = random.Random(f"orchestrated:{seed}")
    tag = run_tag(rng)
    if start_ns is None:
        start_ns = time.time_ns() - (n * spacing_ms + 5_000) * 1_000_000
    truth: dict[str, Expected] = {}
    for i in range(n):
        outcome = draw_outcome(rng)
        style = STYLES[i % 2]
        key, expected = play_order_saga(
            telemetry,
            rng,
            f"A-{tag}-{i:05d}",
            outcome,
            style,
            start_ns + i * spacing_ms * 1_000_000,
        )
        truth[key] = expected
    return truth


def main(argv: list[str] | None = None) -> None:
    """Command line: play seeded orchestrated sagas against a collector."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collector", default="http://127.0.0.1:4318")
    parser.add_argument("--grpc", default="", help="host:port; export over OTLP/gRPC instead")
    parser.add_argument("--token", default="")
    parser.add_argument("--sagas", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    exporter = (
        otlp_grpc_exporter(args.grpc, args.token)
        if args.grpc
        else otlp_http_exporter(args.collector, args.token)
    )
    telemetry = Telemetry(exporter)
    truth = run_orchestrated(telemetry, args.sagas, seed=args.seed)
    telemetry.shutdown()
    for key, expected in truth.items():
        print(f"{key}  {expected.status}  {expected.step}")


if __name__ == "__main__":
    main()
