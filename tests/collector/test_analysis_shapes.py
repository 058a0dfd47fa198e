"""Every framework shape through every scenario: status, explanation, findings and evidence."""

import random

import pytest
import yaml

from collector.analysis.config import SagaConfig
from collector.analysis.core import analyze
from collector.analysis.model import AnalysisResult
from collector.normalize.cloudevents import Envelope, decode_items
from collector.normalize.otlp import decode_otlp_json_object
from collector.normalize.records import EventRecord, SpanRecord, finalize_event_key
from sample_data import DEMO_CONFIG
from sample_data.choreographed import LocalBus, Shop, run_choreographed
from sample_data.outcomes import Expected
from sample_data.publish import EventList
from sample_data.shapes import BASE_NS, MINUTE_NS, SCENARIOS, SHAPES, build_saga, shape_config
from sample_data.telemetry import Telemetry, encode_otlp_json

EXPECTED = {
    "healthy": ("completed", []),
    "compensated": ("compensated", []),
    "compensation_missing": ("compensation_missing", ["missing_compensation"]),
    "compensation_failed": ("compensation_failed", ["compensation_failed"]),
    "stalled": ("stalled", ["stall"]),
    "out_of_order": ("compensated", ["compensation_out_of_order"]),
    "duplicate": ("completed", ["duplicate_step"]),
    "unexpected_compensation": ("failed", ["unexpected_compensation"]),
    "retry": ("completed", []),
}
# choreographed compensations run concurrently by design: no order to check
OVERRIDES = {("cloudevents", "out_of_order"): ("compensated", [])}
IDENTITY_RULES = {
    "saga_convention": "saga.id",
    "temporal": "temporal",
    "masstransit": "masstransit",
    "nservicebus": "nservicebus",
    "axon": "axon",
    "dapr": "durabletask",
    "cloudevents": "correlation",
    "linked": "saga.id",
    "business_key": "business",
}


def run(shape: str, scenario: str, seed: int = 3) -> tuple[AnalysisResult, dict[str, str]]:
    sample = build_saga(shape, scenario, seed=seed, index=42)
    config = SagaConfig.from_dict(shape_config(shape))
    result = analyze(sample.spans, sample.logs, sample.events, config, sample.now_ns)
    assert len(result.sagas) == 1, [s.saga_key for s in result.sagas]
    every = {r.ref for r in sample.spans} | {r.ref for r in sample.logs}
    every |= {r.ref for r in sample.events}
    assert set(result.membership) == every
    return result, sample.names


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("shape", SHAPES)
def test_status_and_findings(shape, scenario):
    result, _ = run(shape, scenario)
    saga = result.sagas[0]
    status, kinds = OVERRIDES.get((shape, scenario), EXPECTED[scenario])
    assert saga.status == status, saga.explanation
    assert sorted(f.kind for f in result.findings) == kinds, saga.explanation
    assert saga.identity_rule == IDENTITY_RULES[shape]
    assert saga.finding_count == len(result.findings)
    assert saga.explanation
    refs = set(result.membership)
    for finding in result.findings:
        assert finding.evidence and set(finding.evidence) <= refs
        assert finding.explanation
        assert finding.saga_key == saga.saga_key
        assert len(finding.finding_id) == 32
    for step in result.steps:
        assert step.records and set(step.records) <= refs


@pytest.mark.parametrize("shape", SHAPES)
def test_compensated_explains_what_was_undone(shape):
    result, names = run(shape, "compensated")
    saga = result.sagas[0]
    assert f"{names['reserve']} was undone by {names['release']}" in saga.explanation
    failed_at = "PaymentDeclined" if shape == "cloudevents" else names["charge"]
    assert saga.failed_step == failed_at
    assert saga.explanation.startswith("Failed")


@pytest.mark.parametrize("shape", SHAPES)
def test_missing_compensation_names_the_steps(shape):
    result, names = run(shape, "compensation_missing")
    saga = result.sagas[0]
    charge = names["charge"] if shape != "cloudevents" else "PaymentCharged"
    refund = names["refund"] if shape != "cloudevents" else "PaymentRefunded"
    assert f"{charge} completed but {refund} never ran" in saga.explanation
    (finding,) = result.findings
    assert finding.severity == "critical"
    assert finding.step == charge
    assert finding.details["expected"] == refund
    charge_step = next(s for s in result.steps if s.name == charge)
    assert set(charge_step.records) <= set(finding.evidence)


@pytest.mark.parametrize("shape", SHAPES)
def test_compensation_failed(shape):
    result, names = run(shape, "compensation_failed")
    (finding,) = result.findings
    assert finding.kind == "compensation_failed"
    comp = next(
        s
        for s in result.steps
        if s.step_type in ("compensation", "event") and s.outcome == "failed" and s.compensates
    )
    assert comp.attempts == 3
    assert comp.compensates == names["reserve"]
    assert set(comp.records) <= set(finding.evidence)


@pytest.mark.parametrize("shape", SHAPES)
def test_stall_says_what_it_waits_for_and_since_when(shape):
    result, names = run(shape, "stalled")
    saga = result.sagas[0]
    (finding,) = result.findings
    assert finding.explanation == saga.explanation
    assert saga.explanation.startswith("No progress for 12m")
    assert "2026-11-22 10:00" in saga.explanation
    assert "(threshold 5m, default)" in saga.explanation
    assert saga.ended_ns == 0
    if shape == "temporal":
        # the StartActivity span is the evidence that the hung activity started
        assert f"since {names['charge']} started at" in saga.explanation
        assert f"waiting for {names['charge']} to finish" in saga.explanation
        assert saga.waiting_for == names["charge"]
        running = [s for s in result.steps if s.outcome == "running"]
        assert [s.name for s in running] == [names["charge"]]
        assert running[0].end_ns == 0
    elif shape in ("nservicebus", "axon", "linked", "business_key"):
        assert f"waiting for {names['charge']} to start" in saga.explanation
    elif shape == "cloudevents":
        assert "waiting for PaymentCharged to start" in saga.explanation


@pytest.mark.parametrize("shape", [s for s in SHAPES if s != "cloudevents"])
def test_out_of_order(shape):
    result, names = run(shape, "out_of_order")
    (finding,) = result.findings
    assert finding.details["expected"] == [names["refund"], names["release"]]
    assert finding.details["ran"] == [names["release"], names["refund"]]


@pytest.mark.parametrize("shape", SHAPES)
def test_duplicate(shape):
    result, names = run(shape, "duplicate")
    (finding,) = result.findings
    charge = names["charge"] if shape != "cloudevents" else "PaymentCharged"
    assert finding.step == charge
    dupes = [s for s in result.steps if s.name == charge]
    assert len(dupes) == 2
    assert set(dupes[0].records) | set(dupes[1].records) <= set(finding.evidence)


@pytest.mark.parametrize("shape", SHAPES)
def test_unexpected_compensation(shape):
    result, names = run(shape, "unexpected_compensation")
    (finding,) = result.findings
    refund = names["refund"] if shape != "cloudevents" else "PaymentRefunded"
    assert finding.step == refund
    assert "never ran" in finding.explanation


@pytest.mark.parametrize("shape", SHAPES)
def test_retry_is_one_step_with_attempts(shape):
    result, names = run(shape, "retry")
    charge = names["charge"] if shape != "cloudevents" else "PaymentCharged"
    (step,) = [s for s in result.steps if s.name == charge]
    assert step.outcome == "ok"
    assert step.attempts == 2


@pytest.mark.parametrize("shape", SHAPES)
def test_healthy_steps_in_order(shape):
    result, names = run(shape, "healthy")
    ordered = [s.name for s in result.steps if s.step_type == "action" or s.name != "OrderPlaced"]
    if shape == "cloudevents":
        expected = ["InventoryReserved", "PaymentCharged", "OrderShipped"]
    else:
        expected = [names["reserve"], names["charge"], names["ship"]]
    assert [n for n in ordered if n in expected] == expected
    assert [s.seq for s in result.steps] == list(range(len(result.steps)))
    assert all(s.outcome == "ok" for s in result.steps)
    assert result.sagas[0].ended_ns > 0


def test_declared_and_inferred_pairs():
    declared, _ = run("saga_convention", "compensated")
    (comp,) = [s for s in declared.steps if s.step_type == "compensation"]
    assert (comp.compensates, comp.compensation_inferred) == ("reserve_inventory", False)
    inferred, _ = run("temporal", "compensated")
    (comp,) = [s for s in inferred.steps if s.step_type == "compensation"]
    assert (comp.compensates, comp.compensation_inferred) == ("ReserveInventory", True)


def test_temporal_activity_step_uses_worker_service():
    result, names = run("temporal", "healthy")
    step = next(s for s in result.steps if s.name == names["charge"])
    assert step.service == "payments"
    assert result.sagas[0].saga_type == "OrderWorkflow"


def test_linked_traces_form_one_saga():
    result, _ = run("linked", "healthy")
    assert len(result.sagas[0].trace_ids) == 4


def test_business_key_joins_spans_and_events():
    result, _ = run("business_key", "healthy")
    saga = result.sagas[0]
    assert saga.saga_key == "order.id:42"
    assert saga.business_keys == ["order.id=42"]
    assert saga.step_count == 4  # OrderPlaced event + three actions


@pytest.fixture(scope="module")
def choreographed() -> tuple[AnalysisResult, dict[str, Expected]]:
    """The choreographed sample system through the real decoders, analysed an hour later."""
    start = BASE_NS
    telemetry = Telemetry(rng=random.Random(1))
    sink = EventList()
    truth = run_choreographed(Shop(telemetry, LocalBus(sink)), 40, seed=5, start_ns=start)
    spans = decode_otlp_json_object(encode_otlp_json(telemetry.take_finished())).spans
    events = decode_items(sink.events, Envelope("file")).events
    config = SagaConfig.from_dict(yaml.safe_load(DEMO_CONFIG.read_text()))
    return analyze(spans, [], events, config, start + 60 * MINUTE_NS), truth


@pytest.mark.parametrize("status", ["compensated", "compensation_missing", "compensation_failed"])
def test_choreographed_failure_is_the_first_failure_in_time(choreographed, status):
    result, truth = choreographed
    sagas = [s for s in result.sagas if truth[s.saga_key].status == status]
    assert sagas
    for saga in sagas:
        # a refund handler span that errors while compensating is not what failed the saga
        assert saga.failed_step in ("PaymentDeclined", "ShippingFailed"), saga.explanation
        assert saga.explanation.startswith(f"Failed: {saga.failed_step};"), saga.explanation
    if status == "compensation_failed":
        assert any("(PaymentRefundFailed)" in s.explanation for s in sagas)


def test_choreographed_completion_names_the_completing_step(choreographed):
    result, truth = choreographed
    completed = [s for s in result.sagas if truth[s.saga_key].status == "completed"]
    assert completed
    for saga in completed:
        # checkout's status update consumes OrderShipped after completion: not the last step
        assert saga.explanation.startswith("Completed after OrderShipped ("), saga.explanation


def _consumer(n: int, name: str, handled: str, published: str) -> tuple[SpanRecord, EventRecord]:
    """A billing consumer span (one queue for every message) and the event it published."""
    trace, span_id = f"{n:032x}", f"{n:016x}"
    attrs = {"messaging.system": "rabbitmq", "order.id": "42"}
    if handled:
        attrs["messaging.message.type"] = handled
    start = BASE_NS + n * 1_000_000_000
    span = SpanRecord(
        trace, span_id, name, start, start + 50_000_000, kind=5, attributes=attrs,
        service_name="billing",
    )  # fmt: skip
    producer = SpanRecord(
        trace, f"{n + 100:016x}", "publish orders", start + 10_000_000, start + 20_000_000,
        parent_span_id=span_id, kind=4, service_name="billing",
    )  # fmt: skip
    event = finalize_event_key(
        EventRecord(
            id=f"e{n}", source="/billing", type=published, transport="amqp",
            time_ns=start + 20_000_000, trace_id=trace, parent_span_id=producer.span_id,
            data={"orderId": "42"},
        )
    )  # fmt: skip
    return span, event


REFUND = ("PaymentCharged", "PaymentRefunded")


@pytest.mark.parametrize(
    ("name", "handled", "published", "duplicates"),
    [
        ("process billing", ("InventoryReserved", "ShippingFailed"), REFUND, []),
        ("billing receive", ("InventoryReserved", "ShippingFailed"), REFUND, []),
        # no message type on the span: the events the handlers published tell them apart
        ("process billing", ("", ""), REFUND, []),
        (
            "process billing",
            ("InventoryReserved", "InventoryReserved"),
            ("PaymentCharged", "PaymentCharged"),
            ["PaymentCharged", "process billing"],
        ),
        ("ChargePayment", ("InventoryReserved", "ShippingFailed"), REFUND, ["ChargePayment"]),
    ],
)
def test_consumers_on_one_queue_are_not_duplicates(name, handled, published, duplicates):
    records = [_consumer(i + 1, name, handled[i], published[i]) for i in range(2)]
    spans = [r[0] for r in records]
    events = [r[1] for r in records]
    config = SagaConfig.from_dict(
        {"correlation": [{"attribute": "order.id"}, {"json": "data.orderId"}]}
    )
    result = analyze(spans, [], events, config, BASE_NS + 3600 * 1_000_000_000)
    assert [s.saga_key for s in result.sagas] == ["order.id:42"]
    found = [f.step for f in result.findings if f.kind == "duplicate_step"]
    assert found == duplicates, result.sagas[0].explanation


@pytest.mark.parametrize(
    ("shape", "config", "saga_type"),
    [
        # no definitions: the saga state type / the Axon saga class names the saga
        ("masstransit", {}, "OrderState"),
        ("axon", {}, "OrderSaga"),
        ("nservicebus", {}, "OrderSaga"),
        # a definition the steps match names it when the framework type is not defined
        ("masstransit", shape_config("axon"), "OrderSaga"),
    ],
)
def test_framework_saga_type_without_definitions(shape, config, saga_type):
    sample = build_saga(shape, "healthy", seed=3, index=42)
    result = analyze(
        sample.spans, sample.logs, sample.events, SagaConfig.from_dict(config), sample.now_ns
    )
    assert [s.saga_type for s in result.sagas] == [saga_type]


def _span(n: int, service: str, name: str) -> SpanRecord:
    return SpanRecord(
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        name=name,
        start_ns=BASE_NS + n * 1_000_000,
        end_ns=BASE_NS + n * 1_000_000 + 500_000,
        kind=2,
        service_name=service,
        attributes={"saga.id": "order-7", "saga.name": "OrderSaga", "saga.step": name},
    )


def test_one_finding_per_kind_and_step_with_every_report_as_evidence():
    # A successful saga that released its stock in three services: three reports of one
    # unexpected compensation, stored as one finding (its id is the saga, kind and step).
    services = ["orders", "inventory", "shipping"]
    spans = [_span(1, "orders", "reserve_inventory"), _span(2, "orders", "notify_customer")]
    spans += [_span(3 + i, s, "release_inventory") for i, s in enumerate(services)]
    result = analyze(spans, [], [], SagaConfig.from_dict({}), BASE_NS + 10 * MINUTE_NS)
    unexpected = [f for f in result.findings if f.kind == "unexpected_compensation"]
    assert len({f.finding_id for f in result.findings}) == len(result.findings)
    (finding,) = unexpected
    assert finding.step == "release_inventory"
    assert {f"span:{3 + i:032x}:{3 + i:016x}" for i in range(3)} <= set(finding.evidence)
    assert finding.details["reports"] == 3


def test_a_saga_of_events_alone_names_their_sources_as_its_services():
    # A choreographed saga seen only on the broker: the services are the events' sources.
    events = [
        finalize_event_key(
            EventRecord(
                id=f"e{i}",
                source=source,
                type=type_,
                transport="amqp",
                time_ns=BASE_NS + i * 1_000_000,
                extensions={"correlationid": "order-9"},
            )
        )
        for i, (source, type_) in enumerate(
            [("/shop/orders", "OrderPlaced"), ("/shop/billing", "PaymentCharged")]
        )
    ]
    result = analyze([], [], events, SagaConfig(), BASE_NS + MINUTE_NS)
    (saga,) = result.sagas
    assert saga.services == ["/shop/billing", "/shop/orders"]
    assert [s.service for s in result.steps] == ["/shop/orders", "/shop/billing"]


@pytest.mark.parametrize("scenario", ["healthy", "compensated", "compensation_missing"])
def test_steps_take_the_spelling_of_the_definitions_file(scenario):
    # saga.step spans say reserve_inventory, Temporal activities ReserveInventory: the demo's
    # definitions file declares the snake_case names, so both are stored under those
    config = SagaConfig.from_dict(yaml.safe_load(DEMO_CONFIG.read_text()))
    declared = {"reserve_inventory", "release_inventory", "charge_payment", "refund_payment"}
    declared.add("ship_order")
    names = {}
    for shape in ("saga_convention", "temporal"):
        sample = build_saga(shape, scenario, seed=3, index=42)
        result = analyze(sample.spans, sample.logs, sample.events, config, sample.now_ns)
        (saga,) = result.sagas
        names[shape] = [s.name for s in result.steps]
        assert set(names[shape]) <= declared, names[shape]
        assert {f.step for f in result.findings} <= declared
        assert {s.compensates for s in result.steps} <= declared | {""}
        assert "Inventory" not in saga.explanation and "Payment" not in saga.explanation
    assert names["temporal"] == names["saga_convention"]
