"""Orchestrated sample system: an OrderSaga orchestrator driving inventory, payments, shipping.

Inventory, payments and shipping are HTTP services on loopback, each served from its own
thread and traced by its own ``TracerProvider`` (see ``Telemetry``); the orchestrator calls
them over real HTTP with W3C trace context in the request headers. Half of the sagas follow
the ``saga.*`` span convention; the other half look like a Temporal workflow traced by the
Temporal interceptor (``StartActivity:ReserveInventory`` / ``RunActivity:...`` with
``temporalWorkflowID``; the workers get their activity tasks over HTTP), so both identity
rules are exercised.

Each request carries the saga's simulated time (``at``), so a saga played in milliseconds
looks like it took seconds, and the fault to inject (``fault``): ``fail`` answers with the
step's business error, ``flaky`` with a transient one the orchestrator retries, ``hang``
starts the work and drops the connection, like a process that froze.

Run it against a collector::

    python -m sample_data.orchestrated --collector http://127.0.0.1:4318 --sagas 20
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from sample_data.outcomes import Expected, add_faults_argument, draw_outcome, plan_fields, run_tag
from sample_data.telemetry import SagaClock, Telemetry, otlp_grpc_exporter, otlp_http_exporter

SYSTEM = "orchestrated"
SAGA_TYPE = "OrderSaga"
ORCHESTRATOR = "order-orchestrator"
API = "order-api"
FORWARD = ("reserve", "charge", "ship")
UNDO = {"reserve": "release", "charge": "refund"}
SERVICES = ("inventory", "payments", "shipping")
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
TRANSIENT = ("ServiceUnavailable", "upstream timed out, try again", 503)
STYLES = ("saga", "temporal")
RETRIES = 3  # attempts of a failing compensation before the orchestrator gives up
CALL_TIMEOUT_S = 10.0
# attempt outcome -> the fault the service is asked to inject
FAULT = {"ok": "", "failed": "fail", "flaky": "flaky", "hang": "hang"}


@dataclass(frozen=True, slots=True)
class Plan:
    """How one saga goes: which step fails or hangs, which compensation is skipped or broken."""

    outcome: str
    fail_at: str = ""
    hang_at: str = ""
    skip: str = ""  # compensation the orchestrator forgets (the bug we want flagged)
    broken: str = ""  # compensation that keeps failing
    flaky: str = ""  # step whose first attempt fails transiently and is retried
    duplicate: str = ""  # event delivered twice (choreographed system only)

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


# ---- the services: each one is its own HTTP server and its own traced service


Reply = tuple[int, dict[str, Any]] | None  # None: the connection is dropped without an answer


class _Service:
    """What inventory, payments or shipping do for one call: spans, a DB write, a fault."""

    def __init__(self, name: str, telemetry: Telemetry) -> None:
        self.name = name
        self.t = telemetry

    def handle(self, method: str, headers: dict[str, str], call: dict[str, Any]) -> Reply:
        step, order_id = call["step"], call["order_id"]
        if SERVICE.get(step) != self.name:
            return 404, {"error": f"{self.name} does not serve {step!r}"}
        attempt, fault = int(call.get("attempt", 1)), str(call.get("fault", ""))
        # per call, so a service's timings do not depend on the order requests arrive in
        clock = SagaClock(int(call["at"]), random.Random(f"{order_id}:{step}:{attempt}"))
        if "activity" in call:
            return self._activity(step, call, attempt, fault, headers, clock)
        return self._serve(step, method, order_id, fault, headers, clock)

    def _serve(self, step: str, method: str, order_id: str, fault: str,
               headers: dict[str, str], clock: SagaClock) -> Reply:  # fmt: skip
        """An HTTP request traced the way HTTP server instrumentation traces it."""
        kind, message, code = TRANSIENT if fault == "flaky" else ERRORS.get(step, ("", "", 500))
        route = NAMES[step][2].split(" ", 1)[1]
        failing = fault in ("fail", "flaky")
        server = self.t.tracer(self.name).start_span(
            f"{method} {route}",
            context=extract(headers),
            kind=SpanKind.SERVER,
            start_time=clock.tick(1, 4),
            attributes={
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": code if failing else 200,
                "order.id": order_id,
            },
        )
        if fault == "hang":
            return None  # the handler froze: the span never ends, so it is never exported
        self._work(server, clock)
        end = clock.tick(10, 400)
        if failing and code >= 500:
            _error(server, kind, message, end)
        server.end(end_time=end)
        if failing:
            return code, {"at": end, "error": kind, "message": message}
        return 200, {"at": end}

    def _activity(self, step: str, call: dict[str, Any], attempt: int, fault: str,
                  headers: dict[str, str], clock: SagaClock) -> Reply:  # fmt: skip
        """A Temporal activity task run by this service's worker."""
        name = str(call["activity"])
        run = self.t.tracer(self.name).start_span(
            f"RunActivity:{name}",
            context=extract(headers),
            kind=SpanKind.SERVER,
            start_time=clock.tick(2, 30 if attempt == 1 else 1000),
            attributes={**call["ids"], "temporalActivityAttempt": attempt},
        )
        if fault == "hang":
            return None  # the worker is stuck: RunActivity never ends, so it is never exported
        self._work(run, clock)
        end = clock.tick(10, 400)
        if fault in ("fail", "flaky"):
            kind, message, _ = TRANSIENT if fault == "flaky" else ERRORS[step]
            _error(run, kind, message, end)
            run.end(end_time=end)
            return 500, {"at": end, "error": kind, "message": message}
        run.end(end_time=end)
        return 200, {"at": end}

    def _work(self, parent: Span, clock: SagaClock) -> None:
        """The database write a service does for a step."""
        db = self.t.tracer(self.name).start_span(
            "UPDATE stock" if self.name == "inventory" else f"INSERT {self.name}",
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            start_time=clock.tick(1, 3),
            attributes={"db.system.name": "postgresql", "db.namespace": self.name},
        )
        db.end(end_time=clock.tick(2, 40))


class _Handler(BaseHTTPRequestHandler):
    server: _ServiceServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            call = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = self.server.service.handle(self.command, headers, call)
        except (ValueError, KeyError, TypeError) as exc:
            reply = 400, {"error": f"bad request: {exc}"}
        if reply is None:
            self.close_connection = True
            return
        status, body = reply
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the sample services do not log every request


class _ServiceServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, service: _Service) -> None:
        super().__init__((host, 0), _Handler)
        self.service = service


class OrderServices:
    """Inventory, payments and shipping, each an HTTP server on its own loopback port.

    Use as a context manager; ``client`` is the orchestrator's HTTP client.
    """

    def __init__(self, telemetry: Telemetry, host: str = "127.0.0.1") -> None:
        self.telemetry = telemetry
        self._servers = {name: _ServiceServer(host, _Service(name, telemetry)) for name in SERVICES}
        self._threads = [
            threading.Thread(target=s.serve_forever, name=f"sample-{n}", daemon=True)
            for n, s in self._servers.items()
        ]
        for thread in self._threads:
            thread.start()
        self.client = httpx.Client(timeout=CALL_TIMEOUT_S)

    def url(self, service: str) -> str:
        host, port = self._servers[service].server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.client.close()
        for server in self._servers.values():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> OrderServices:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# ---- the orchestrator


class _Saga:
    """One run of the OrderSaga orchestrator."""

    def __init__(
        self, services: OrderServices, rng: random.Random, order_id: str, plan: Plan, style: str,
        start_ns: int,
    ) -> None:  # fmt: skip
        self.services = services
        self.t = services.telemetry
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

    def request(self, step: str, context: Context, attempt: int, outcome: str,
                **extra: Any) -> int | None:  # fmt: skip
        """One HTTP call to the step's service: its status, or None when it never answered."""
        headers: dict[str, str] = {}
        inject(headers, context=context)
        method, route = NAMES[step][2].split(" ", 1)
        url = self.services.url(SERVICE[step]) + route.replace("{id}", self.order_id)
        call = {
            "step": step,
            "order_id": self.order_id,
            "attempt": attempt,
            "fault": FAULT[outcome],
            "at": self.clock.now,
            **extra,
        }
        try:
            response = self.services.client.request(method, url, json=call, headers=headers)
        except httpx.TransportError:
            return None  # the service froze; this orchestrator gives up on the saga
        self.clock.now = max(self.clock.now, int(response.json()["at"]))
        return response.status_code

    def call(self, step: str, parent: Context, outcome: str, attempt: int = 1) -> bool:
        """Orchestrator -> service call for one step attempt (saga.* convention); False if hung."""
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
        status = self.request(step, set_span_in_context(client), attempt, outcome)
        if status is None:
            return False  # the call never returns: the client span never ends either
        end = self.clock.tick(1, 5)
        if status >= 400:
            kind, message, _ = TRANSIENT if outcome == "flaky" else ERRORS[step]
            _error(client, kind, message, end)
        client.end(end_time=end)
        return True

    def activity(self, step: str, parent: Context, outcomes: list[str]) -> bool:
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
        context = set_span_in_context(scheduled)
        for attempt, outcome in enumerate(outcomes, start=1):
            if self.request(step, context, attempt, outcome, activity=name, ids=ids) is None:
                return False
        return True

    def attempts(self, step: str) -> list[str]:
        if step == self.plan.hang_at:
            return ["hang"]
        if step == self.plan.fail_at:
            return ["failed"]
        if step == self.plan.broken:
            return ["failed"] * RETRIES
        if step == self.plan.flaky:
            return ["flaky", "ok"]
        return ["ok"]

    def run(self) -> Expected:
        if self.style == "saga":
            self._run_saga_convention()
        else:
            self._run_temporal()
        # the demo's definitions file spells every step in snake_case, and sagalens names a
        # step as that file does whichever spelling the spans use
        retried = NAMES[self.plan.flaky][0] if self.plan.flaky else ""
        return Expected(SYSTEM, self.plan.outcome, self.plan_step_name(), self.order_id, retried)

    def plan_step_name(self) -> str:
        step = self.plan.expected_step
        return NAMES[step][0] if step else ""

    def _steps(self, run_step: Callable[[str, list[str]], bool]) -> tuple[bool, bool]:
        """Drive forward steps then compensations; (failed, hung)."""
        done: list[str] = []
        for step in FORWARD:
            outcomes = self.attempts(step)
            if not run_step(step, outcomes):
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

        def run_step(step: str, outcomes: list[str]) -> bool:
            return all(
                self.call(step, parent, outcome, attempt)
                for attempt, outcome in enumerate(outcomes, start=1)
            )

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
    services: OrderServices, rng: random.Random, order_id: str, outcome: str, style: str,
    start_ns: int,
) -> tuple[str, Expected]:  # fmt: skip
    """Run one OrderSaga; return its saga key (as sagalens derives it) and ground truth."""
    saga = _Saga(services, rng, order_id, draw_plan(rng, outcome), style, start_ns)
    return saga.key, saga.run()


def run_orchestrated(
    services: OrderServices, n: int, *, seed: int = 0, start_ns: int | None = None,
    spacing_ms: int = 400, faults: Mapping[str, float] | None = None,
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
        outcome = draw_outcome(rng, faults)
        style = STYLES[i % 2]
        key, expected = play_order_saga(
            services,
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
    add_faults_argument(parser)
    args = parser.parse_args(argv)
    exporter = (
        otlp_grpc_exporter(args.grpc, args.token)
        if args.grpc
        else otlp_http_exporter(args.collector, args.token)
    )
    telemetry = Telemetry(exporter)
    with OrderServices(telemetry) as services:
        truth = run_orchestrated(services, args.sagas, seed=args.seed, faults=args.faults)
    telemetry.shutdown()
    for key, expected in truth.items():
        print(f"{key}  {expected.status}  {expected.step}")


if __name__ == "__main__":
    main()
