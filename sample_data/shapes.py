"""Seeded builders of realistic saga records, one per framework shape.

Pure and deterministic: the same seed gives the same spans, logs and events. Used by the
tests, the sample systems and the benchmarks. Every shape plays the same order saga
(reserve inventory, charge payment, ship order; release inventory and refund payment undo
the first two) through a scenario such as ``healthy`` or ``compensation_missing``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from collector.normalize.records import (
    EventRecord,
    LogRecord,
    SpanRecord,
    finalize_event_key,
    finalize_log_id,
)

BASE_NS = 1_795_341_600 * 1_000_000_000  # 2026-11-22 10:00:00Z
MINUTE_NS = 60 * 1_000_000_000
SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = 2, 3, 4, 5, 1

SHAPES = (
    "saga_convention",
    "temporal",
    "masstransit",
    "nservicebus",
    "axon",
    "dapr",
    "cloudevents",
    "linked",
    "business_key",
)
SCENARIOS = (
    "healthy",
    "compensated",
    "compensation_missing",
    "compensation_failed",
    "stalled",
    "out_of_order",
    "duplicate",
    "unexpected_compensation",
    "retry",
)
# scenario -> [(abstract step, outcome of each attempt)]; "running" never finishes
PLANS: dict[str, list[tuple[str, list[str]]]] = {
    "healthy": [("reserve", ["ok"]), ("charge", ["ok"]), ("ship", ["ok"])],
    "compensated": [("reserve", ["ok"]), ("charge", ["declined"]), ("release", ["ok"])],
    "compensation_missing": [
        ("reserve", ["ok"]), ("charge", ["ok"]), ("ship", ["failed"]), ("release", ["ok"]),
    ],
    "compensation_failed": [
        ("reserve", ["ok"]), ("charge", ["declined"]), ("release", ["failed"] * 3),
    ],
    "stalled": [("reserve", ["ok"]), ("charge", ["running"])],
    "out_of_order": [
        ("reserve", ["ok"]), ("charge", ["ok"]), ("ship", ["failed"]), ("release", ["ok"]),
        ("refund", ["ok"]),
    ],
    "duplicate": [("reserve", ["ok"]), ("charge", ["ok"]), ("charge", ["ok"]), ("ship", ["ok"])],
    "unexpected_compensation": [("reserve", ["failed"]), ("refund", ["ok"])],
    "retry": [("reserve", ["ok"]), ("charge", ["failed", "ok"]), ("ship", ["ok"])],
}  # fmt: skip
WORDS = {
    "reserve": ("reserve", "inventory"),
    "charge": ("charge", "payment"),
    "ship": ("ship", "order"),
    "release": ("release", "inventory"),
    "refund": ("refund", "payment"),
}
SERVICES = {
    "reserve": "inventory",
    "release": "inventory",
    "charge": "payments",
    "refund": "payments",
    "ship": "shipping",
}
COMPENSATIONS = {"release": "reserve", "refund": "charge"}
EVENT_OK = {
    "reserve": "InventoryReserved",
    "charge": "PaymentCharged",
    "ship": "OrderShipped",
    "release": "InventoryReleased",
    "refund": "PaymentRefunded",
}
EVENT_FAILED = {
    "reserve": "InventoryFailed",
    "charge": "PaymentDeclined",
    "ship": "ShippingFailed",
    "release": "InventoryReleaseFailed",
    "refund": "PaymentRefundFailed",
}
STYLE = {
    "saga_convention": "snake",
    "temporal": "pascal",
    "masstransit": "pascal",
    "nservicebus": "pascal",
    "axon": "pascal",
    "dapr": "camel",
    "cloudevents": "event",
    "linked": "kebab",
    "business_key": "pascal",
}


def step_name(shape: str, step: str) -> str:
    """The name the analysis should report for an abstract step in a shape."""
    style = STYLE[shape]
    verb, obj = WORDS[step]
    if style == "event":
        return EVENT_OK[step]
    if style == "snake":
        return f"{verb}_{obj}"
    if style == "kebab":
        return f"{verb}-{obj}"
    if style == "camel":
        return verb + obj.capitalize()
    return verb.capitalize() + obj.capitalize()


def shape_config(shape: str) -> dict[str, Any]:
    """Definitions-file content (as loaded from YAML) a deployment of this shape would use."""
    if shape in ("saga_convention", "temporal", "masstransit", "dapr"):
        return {}  # fully inferred
    names = {s: step_name(shape, s) for s in WORDS}
    saga: dict[str, Any] = {
        "steps": [
            {"name": names["reserve"], "compensation": names["release"]},
            {"name": names["charge"], "compensation": names["refund"]},
            {"name": names["ship"]},
        ],
        "completes_on": [names["ship"]],
    }
    if shape == "cloudevents":
        saga["fails_on"] = ["PaymentDeclined", "InventoryFailed", "ShippingFailed"]
    config: dict[str, Any] = {"sagas": {"OrderSaga": saga}}
    if shape == "business_key":
        config["correlation"] = [{"attribute": "order.id"}, {"json": "data.orderId"}]
    return config


@dataclass
class SagaSample:
    """One built saga: its records, the shape's names and the 'now' to analyse it at."""

    shape: str
    scenario: str
    order_id: str
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    start_ns: int = 0
    last_ns: int = 0
    now_ns: int = 0
    names: dict[str, str] = field(default_factory=dict)


class _Ids:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def trace(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def span(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def uuid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Builder:
    """Shared mechanics: clock, ids, spans, events and error logs."""

    def __init__(
        self, shape: str, scenario: str, rng: random.Random, start_ns: int, index: int
    ) -> None:
        self.shape, self.scenario, self.rng = shape, scenario, rng
        self.ids = _Ids(rng)
        self.now = start_ns
        self.sample = SagaSample(shape, scenario, f"order-{index}", start_ns=start_ns)
        self.sample.names = {s: step_name(shape, s) for s in WORDS}

    def tick(self, lo_ms: int = 20, hi_ms: int = 300) -> int:
        self.now += self.rng.randint(lo_ms, hi_ms) * 1_000_000
        return self.now

    def span(
        self,
        trace: str,
        name: str,
        service: str,
        start: int,
        end: int,
        *,
        parent: str = "",
        kind: int = INTERNAL,
        error: str = "",
        attrs: dict[str, Any] | None = None,
        links: list[str] | None = None,
        link_trace: str = "",
        span_id: str = "",
    ) -> SpanRecord:
        span = SpanRecord(
            trace_id=trace,
            span_id=span_id or self.ids.span(),
            name=name,
            start_ns=start,
            end_ns=end,
            parent_span_id=parent,
            kind=kind,
            status_code=2 if error else 0,
            status_message=error,
            attributes=dict(attrs or {}),
            service_name=service,
            resource_attributes={"service.name": service},
        )
        if error:
            span.events.append(
                {
                    "name": "exception",
                    "time_ns": end,
                    "attributes": {"exception.type": "StepError", "exception.message": error},
                }
            )
            log = finalize_log_id(
                LogRecord(
                    time_ns=end,
                    severity_number=17,
                    severity_text="ERROR",
                    body=error,
                    service_name=service,
                    trace_id=trace,
                    span_id=span.span_id,
                )
            )
            self.sample.logs.append(log)
        if links:
            span.links = [{"trace_id": link_trace, "span_id": s, "attributes": {}} for s in links]
        self.sample.spans.append(span)
        return span

    def event(
        self,
        type_: str,
        source: str,
        when: int,
        *,
        trace: str = "",
        extensions: dict[str, Any] | None = None,
        data: Any = None,
    ) -> EventRecord:
        event = finalize_event_key(
            EventRecord(
                id=self.ids.uuid(),
                source=source,
                type=type_,
                transport="amqp",
                time_ns=when,
                received_ns=when + 2_000_000,
                extensions=dict(extensions or {}),
                data=data,
                datacontenttype="application/json",
                trace_id=trace,
            )
        )
        self.sample.events.append(event)
        return event

    def attempts(self) -> Iterator[tuple[str, str, int, int, str, int]]:
        """(step, outcome, start, end, error, attempt number) for every attempt of the plan."""
        for step, outcomes in PLANS[self.scenario]:
            for n, outcome in enumerate(outcomes, start=1):
                start = self.tick()
                if outcome == "running":
                    yield step, outcome, start, 0, "", n
                    return
                end = self.tick(50, 900)
                error = {"ok": "", "declined": "card declined"}.get(outcome, f"{step} failed")
                yield step, outcome, start, end, error, n

    def finish(self) -> SagaSample:
        s = self.sample
        s.last_ns = self.now
        s.now_ns = self.now + 12 * MINUTE_NS
        return s

    @property
    def failed(self) -> bool:
        return any(
            o in ("failed", "declined")
            for _, outcomes in PLANS[self.scenario]
            for o in outcomes[-1:]
        )


def _db(b: _Builder, trace: str, parent: SpanRecord, service: str) -> None:
    mid = (parent.start_ns + max(parent.end_ns, parent.start_ns)) // 2
    b.span(
        trace,
        "UPDATE stock" if service == "inventory" else f"INSERT {service}",
        service,
        parent.start_ns + 1_000_000,
        mid,
        parent=parent.span_id,
        kind=CLIENT,
        attrs={"db.system": "postgresql"},
    )


def _saga_convention(b: _Builder) -> None:
    trace, saga_id, root_id = b.ids.trace(), b.ids.uuid(), b.ids.span()
    root_start = b.now
    names = b.sample.names
    for step, outcome, start, end, error, n in b.attempts():
        if outcome == "running":
            return  # an unfinished span is never exported, nor is the orchestrator's root
        attrs: dict[str, Any] = {
            "saga.id": saga_id,
            "saga.name": "OrderSaga",
            "saga.step": names[step],
            "saga.step.attempt": n,
        }
        if step in COMPENSATIONS:
            attrs["saga.step.type"] = "compensation"
            attrs["saga.compensates"] = names[COMPENSATIONS[step]]
        else:
            attrs["saga.step.type"] = "action"
        call = b.span(
            trace,
            names[step],
            "orchestrator",
            start,
            end,
            parent=root_id,
            kind=CLIENT,
            error=error,
            attrs=attrs,
        )
        verb, obj = WORDS[step]
        server = b.span(
            trace,
            f"POST /{obj}/{verb}",
            SERVICES[step],
            start + 2_000_000,
            end - 2_000_000,
            parent=call.span_id,
            kind=SERVER,
            error=error,
        )
        _db(b, trace, server, SERVICES[step])
    b.span(
        trace,
        "OrderSaga",
        "orchestrator",
        root_start,
        b.tick(),
        kind=SERVER,
        error="saga failed" if b.failed else "",
        span_id=root_id,
        attrs={"saga.id": saga_id, "saga.name": "OrderSaga"},
    )


def _temporal(b: _Builder) -> None:
    trace, wf, run = b.ids.trace(), f"order-workflow-{b.sample.order_id}", b.ids.uuid()
    ids = {"temporalWorkflowID": wf, "temporalRunID": run}
    t = b.now
    start = b.span(
        trace, "StartWorkflow:OrderWorkflow", "api", t, t + 1_000_000, kind=CLIENT, attrs=ids
    )
    t = b.tick()
    wf_span = b.span(
        trace,
        "RunWorkflow:OrderWorkflow",
        "order-worker",
        t,
        t,
        parent=start.span_id,
        kind=SERVER,
        attrs=ids,
    )
    scheduled: SpanRecord | None = None
    activity = 0
    for step, outcome, begin, end, error, n in b.attempts():
        name = b.sample.names[step]
        if n == 1:
            activity += 1
            scheduled = b.span(
                trace,
                f"StartActivity:{name}",
                "order-worker",
                begin,
                begin,
                parent=wf_span.span_id,
                kind=CLIENT,
                attrs={**ids, "temporalActivityID": str(activity)},
            )
        if outcome == "running" or scheduled is None:
            return  # a hung activity never exports RunActivity
        b.span(
            trace,
            f"RunActivity:{name}",
            SERVICES[step],
            begin + 3_000_000,
            end,
            parent=scheduled.span_id,
            kind=SERVER,
            error=error,
            attrs={**ids, "temporalActivityID": str(activity)},
        )
    t = b.tick()
    b.span(
        trace,
        "CompleteWorkflow:OrderWorkflow",
        "order-worker",
        t,
        t,
        parent=wf_span.span_id,
        error="workflow failed" if b.failed else "",
        attrs=ids,
    )


def _pascal(service: str) -> str:
    return service.capitalize()


def _masstransit(b: _Builder) -> None:
    trace, saga_id = b.ids.trace(), b.ids.uuid()
    state = "Initial"

    def transition(to: str) -> SpanRecord:
        nonlocal state
        t = b.tick(5, 20)
        span = b.span(
            trace,
            "OrderState process",
            "orders",
            t,
            t + 4_000_000,
            kind=CONSUMER,
            attrs={
                "messaging.masstransit.saga_id": saga_id,
                "messaging.masstransit.correlation_id": saga_id,
                "messaging.masstransit.begin_state": state,
                "messaging.masstransit.end_state": to,
                "messaging.system": "rabbitmq",
            },
        )
        state = to
        return span

    orchestrator = transition("Submitted")
    for step, outcome, start, end, error, n in b.attempts():
        if outcome == "running":
            return
        name, svc = b.sample.names[step], SERVICES[step]
        consumer = b.span(
            trace,
            f"{svc} process",
            svc,
            start,
            end,
            parent=orchestrator.span_id,
            kind=CONSUMER,
            error=error,
            attrs={
                "messaging.masstransit.consumer_type": f"Shop.{_pascal(svc)}.{name}Consumer",
                "messaging.masstransit.correlation_id": saga_id,
                "messaging.masstransit.retry_attempt": n - 1,
                "messaging.system": "rabbitmq",
            },
        )
        _db(b, trace, consumer, svc)
        orchestrator = transition(f"{name}{'Failed' if error else 'Done'}")
    transition("Faulted" if b.failed else "Final")


def _nservicebus(b: _Builder) -> None:
    saga_id, conversation = b.ids.uuid(), b.ids.uuid()
    trace = b.ids.trace()
    common = {"nservicebus.conversation_id": conversation}

    def orchestrate() -> SpanRecord:
        t = b.tick(5, 20)
        return b.span(
            trace,
            "process message",
            "orders",
            t,
            t + 3_000_000,
            kind=CONSUMER,
            attrs={
                **common,
                "nservicebus.saga.saga_id": saga_id,
                "nservicebus.saga.saga_type": "Shop.Sagas.OrderSaga",
            },
        )

    orchestrator = orchestrate()
    for step, outcome, start, end, error, _ in b.attempts():
        if outcome == "running":
            return
        name, svc = b.sample.names[step], SERVICES[step]
        hop = b.ids.trace()  # each message starts a new trace, linked to the sender
        handler = b.span(
            hop,
            "process message",
            svc,
            start,
            end,
            kind=CONSUMER,
            error=error,
            links=[orchestrator.span_id],
            link_trace=trace,
            attrs={
                **common,
                "nservicebus.handler.handler_type": f"Shop.{_pascal(svc)}.{name}Handler",
            },
        )
        _db(b, hop, handler, svc)
        orchestrator = orchestrate()


def _axon(b: _Builder) -> None:
    trace, saga_id = b.ids.trace(), b.ids.uuid()

    def orchestrate() -> SpanRecord:
        t = b.tick(5, 20)
        return b.span(
            trace,
            "SagaManager[OrderSaga].invokeSaga",
            "orders",
            t,
            t + 3_000_000,
            attrs={"axon.sagaIdentifier": saga_id, "axon_message_type": "EventMessage"},
        )

    orchestrator = orchestrate()
    for step, outcome, start, end, error, _ in b.attempts():
        if outcome == "running":
            return
        name, svc = b.sample.names[step], SERVICES[step]
        handler = b.span(
            trace,
            f"{name}Command handle",
            svc,
            start,
            end,
            parent=orchestrator.span_id,
            kind=SERVER,
            error=error,
            attrs={
                "axon_payload_type": f"com.shop.{svc}.{name}Command",
                "axon_message_type": "CommandMessage",
            },
        )
        _db(b, trace, handler, svc)
        orchestrator = orchestrate()


def _dapr(b: _Builder) -> None:
    trace, instance, orch_id = b.ids.trace(), b.ids.uuid().replace("-", ""), b.ids.span()
    ids = {"durabletask.task.instance_id": instance}
    orch_start = b.now
    client_id, client_start, client_name, client_svc = "", 0, "", ""
    client_error = ""
    plan_steps = [s for s, outcomes in PLANS[b.scenario] for _ in outcomes]
    for i, (step, outcome, start, end, error, n) in enumerate(b.attempts()):
        if outcome == "running":
            return  # the client span is exported when the activity completes
        name = b.sample.names[step]
        if n == 1:
            client_id, client_start, client_name = b.ids.span(), start, name
        client_svc, client_error = "order-workflow", error
        b.span(
            trace,
            f"activity||{name}",
            SERVICES[step],
            start + 2_000_000,
            end,
            parent=client_id,
            kind=SERVER,
            error=error,
            attrs=ids,
        )
        last_attempt = i + 1 >= len(plan_steps) or plan_steps[i + 1] != step or (not error)
        if last_attempt:
            b.span(
                trace,
                f"activity||{client_name}",
                client_svc,
                client_start,
                end + 1_000_000,
                parent=orch_id,
                kind=CLIENT,
                error=client_error,
                attrs=ids,
                span_id=client_id,
            )
    b.span(
        trace,
        "orchestration||OrderWorkflow",
        "order-workflow",
        orch_start,
        b.tick(),
        kind=SERVER,
        error="orchestration failed" if b.failed else "",
        attrs=ids,
        span_id=orch_id,
    )


def _cloudevents(b: _Builder) -> None:
    correlation = b.sample.order_id
    previous = b.event(
        "OrderPlaced",
        "/orders",
        b.tick(),
        extensions={"correlationid": correlation},
        data={"orderId": correlation},
    )
    plan = [(s, o) for s, outcomes in PLANS[b.scenario] for o in outcomes]
    for i, (step, outcome, _start, end, _error, n) in enumerate(b.attempts()):
        if outcome == "running":
            return
        retried_later = outcome != "ok" and i + 1 < len(plan) and plan[i + 1] == (step, "ok")
        if retried_later:
            continue  # a failed attempt that is retried publishes nothing
        type_ = EVENT_OK[step] if outcome == "ok" else EVENT_FAILED[step]
        ext: dict[str, Any] = {"correlationid": correlation, "causationid": previous.id}
        if n > 1 and outcome == "ok":
            ext["attempt"] = n
        previous = b.event(
            type_, f"/{SERVICES[step]}", end, extensions=ext, data={"orderId": correlation}
        )


def _linked(b: _Builder) -> None:
    first = b.ids.trace()
    t = b.now
    root = b.span(
        first,
        "POST /checkout",
        "checkout",
        t,
        t + 40_000_000,
        kind=SERVER,
        attrs={"saga.id": b.ids.uuid(), "http.route": "/checkout"},
    )
    producer = b.span(
        first,
        "orders publish",
        "checkout",
        t + 10_000_000,
        t + 12_000_000,
        parent=root.span_id,
        kind=PRODUCER,
        attrs={"messaging.system": "rabbitmq"},
    )
    prev_trace = first
    for step, outcome, start, end, error, _ in b.attempts():
        if outcome == "running":
            return
        trace, svc = b.ids.trace(), SERVICES[step]
        consumer = b.span(
            trace,
            b.sample.names[step],
            svc,
            start,
            end,
            kind=CONSUMER,
            error=error,
            links=[producer.span_id],
            link_trace=prev_trace,
            attrs={"messaging.system": "rabbitmq", "messaging.operation": "process"},
        )
        _db(b, trace, consumer, svc)
        producer = b.span(
            trace,
            "orders publish",
            svc,
            end - 1_000_000,
            end,
            parent=consumer.span_id,
            kind=PRODUCER,
            attrs={"messaging.system": "rabbitmq"},
        )
        prev_trace = trace


def _business_key(b: _Builder) -> None:
    order = b.sample.order_id.removeprefix("order-")
    b.event("OrderPlaced", "/orders", b.tick(), data={"orderId": order})
    for step, outcome, start, end, error, _ in b.attempts():
        if outcome == "running":
            return
        trace, svc = b.ids.trace(), SERVICES[step]
        server = b.span(
            trace,
            b.sample.names[step],
            svc,
            start,
            end,
            kind=SERVER,
            error=error,
            attrs={"order.id": order},
        )
        _db(b, trace, server, svc)


_SHAPE_BUILDERS = {
    "saga_convention": _saga_convention,
    "temporal": _temporal,
    "masstransit": _masstransit,
    "nservicebus": _nservicebus,
    "axon": _axon,
    "dapr": _dapr,
    "cloudevents": _cloudevents,
    "linked": _linked,
    "business_key": _business_key,
}


def build_saga(
    shape: str, scenario: str, *, seed: int = 0, index: int = 0, start_ns: int = BASE_NS
) -> SagaSample:
    """Build one saga of a framework shape playing a scenario (see SHAPES, SCENARIOS)."""
    if shape not in _SHAPE_BUILDERS:
        raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if scenario not in PLANS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    rng = random.Random(f"{seed}:{shape}:{scenario}:{index}")
    builder = _Builder(shape, scenario, rng, start_ns, index)
    _SHAPE_BUILDERS[shape](builder)
    return builder.finish()


@dataclass
class Population:
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    samples: list[SagaSample] = field(default_factory=list)
    now_ns: int = 0


def build_population(
    n_sagas: int,
    *,
    seed: int = 0,
    shapes: tuple[str, ...] = SHAPES,
    scenario_weights: dict[str, float] | None = None,
    spacing_ns: int = 50_000_000,
    keep_samples: bool = False,
) -> Population:
    """Many sagas over many shapes, mostly healthy, started ``spacing_ns`` apart."""
    weights = scenario_weights or {"healthy": 0.8, **{s: 0.025 for s in SCENARIOS[1:]}}
    names, values = list(weights), list(weights.values())
    rng = random.Random(seed)
    pop = Population()
    for i in range(n_sagas):
        shape = shapes[i % len(shapes)]
        scenario = rng.choices(names, values)[0]
        sample = build_saga(shape, scenario, seed=seed, index=i, start_ns=BASE_NS + i * spacing_ns)
        pop.spans.extend(sample.spans)
        pop.logs.extend(sample.logs)
        pop.events.extend(sample.events)
        pop.now_ns = max(pop.now_ns, sample.now_ns)
        if keep_samples:
            pop.samples.append(sample)
    return pop


def combined_config() -> dict[str, Any]:
    """One definitions file that covers a population mixing every shape.

    Step names compare across naming styles (``ReserveInventory`` = ``reserve-inventory`` =
    ``InventoryReserved``), so one declaration serves all shapes.
    """
    config = shape_config("business_key")
    saga = config["sagas"]["OrderSaga"]
    saga["completes_on"] = ["ShipOrder", "OrderShipped"]
    saga["fails_on"] = ["PaymentDeclined", "InventoryFailed", "ShippingFailed"]
    return config
