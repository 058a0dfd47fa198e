"""Name understanding, identity keys, time formatting and learned stall thresholds."""

import pytest

from collector.analysis.classify import format_duration, format_time
from collector.analysis.config import SagaConfig
from collector.analysis.core import analyze
from collector.analysis.identity import identity_keys
from collector.analysis.names import is_failure_name, match_key, pairing
from collector.analysis.stats import learn_stats, p99
from collector.normalize.records import EventRecord, LogRecord, SpanRecord, finalize_event_key
from sample_data.shapes import MINUTE_NS, build_population, build_saga


@pytest.mark.parametrize(
    ("name", "role", "counterpart"),
    [
        ("ReserveInventory", "action", "ReleaseInventory"),
        ("ReleaseInventory", "compensation", "ReserveInventory"),
        ("charge_payment", "action", "refund_payment"),
        ("refund_payment", "compensation", "charge_payment"),
        ("book-hotel", "action", "cancel-hotel"),
        ("cancel-hotel", "compensation", "book-hotel"),
        ("debitAccount", "action", "creditAccount"),
        ("creditAccount", "compensation", "debitAccount"),
        ("allocate_seat", "action", "deallocate_seat"),
        ("LockFunds", "action", "UnlockFunds"),
        ("hold_room", "action", "release_room"),
        ("CreateOrder", "action", "CancelOrder"),
        ("delete_order", "compensation", "create_order"),
        ("InventoryReserved", "action", "InventoryReleased"),
        ("InventoryReleased", "compensation", "InventoryReserved"),
        ("PaymentCharged", "action", "PaymentRefunded"),
        ("undo-reserve-inventory", "compensation", "reserve-inventory"),
        ("compensate_charge_payment", "compensation", "charge_payment"),
        ("RevertShipment", "compensation", "Shipment"),
        ("rollback_transfer", "compensation", "transfer"),
        ("cancel_reserve_seat", "compensation", "reserve_seat"),
        ("ship_order", "", ""),
        ("PaymentDeclined", "", ""),
        ("BookingCreated", "action", "BookingCancelled"),
    ],
)
def test_pairing(name, role, counterpart):
    pair = pairing(name)
    assert (pair.role, pair.counterpart) == (role, counterpart)


@pytest.mark.parametrize(
    "names",
    [
        (
            "reserve_inventory",
            "ReserveInventory",
            "reserve-inventory",
            "reserveInventory",
            "InventoryReserved",
            "com.shop.InventoryReserved",
        ),
        ("ship_order", "ShipOrder", "ship-order", "shipOrder"),
        ("refund_payment", "PaymentRefunded", "RefundPayment"),
    ],
)
def test_match_key_ignores_style(names):
    assert len({match_key(n) for n in names}) == 1


@pytest.mark.parametrize(
    ("name", "failure"),
    [
        ("PaymentDeclined", True),
        ("payment_failed", True),
        ("order-rejected", True),
        ("PaymentTimedOut", True),
        ("payment_timed_out", True),
        ("com.shop.InventoryFailed", True),
        ("PaymentCharged", False),
        ("failover_check", False),
        ("OrderPlaced", False),
    ],
)
def test_failure_names(name, failure):
    assert is_failure_name(name) is failure


def test_format_time_and_duration():
    assert format_time(1_795_341_851 * 10**9 + 5) == "2026-11-22 10:04:11Z"
    assert [
        format_duration(n)
        for n in (
            250_000_000,
            45 * 10**9,
            12 * MINUTE_NS,
            5 * MINUTE_NS + 3 * 10**9,
            65 * MINUTE_NS,
            3 * 24 * 60 * MINUTE_NS,
        )
    ] == ["250ms", "45s", "12m", "5m3s", "1h5m", "3d"]


def test_identity_keys_per_record_kind():
    config = SagaConfig.from_dict(
        {"correlation": [{"attribute": "order.id"}, {"cloudevents": "orderid"}]}
    )
    span = SpanRecord(
        trace_id="a" * 32,
        span_id="b" * 16,
        name="x",
        start_ns=1,
        end_ns=2,
        attributes={"saga.id": "abc", "temporalWorkflowID": "wf-1", "order.id": 42},
        messaging_conversation_id="xyz",
    )
    assert identity_keys(span, config) == [
        "conv:xyz",
        "order.id:42",
        "saga.id:abc",
        "temporal.workflow:wf-1",
    ]
    event = finalize_event_key(
        EventRecord(
            id="e1",
            source="/s",
            type="T",
            transport="http",
            extensions={"correlationid": "order-42", "causationid": "e0", "orderid": "42"},
        )
    )
    assert identity_keys(event, config) == ["ce:e0", "ce:e1", "corr:order-42", "order.id:42"]
    log = LogRecord(time_ns=1, attributes={"order.id": "42"})
    assert identity_keys(log, config) == ["order.id:42"]


def test_saga_key_prefers_rule_priority_then_lexicographic():
    spans = [
        SpanRecord(
            trace_id="1" * 32,
            span_id="1" * 16,
            name="a",
            start_ns=1,
            end_ns=2,
            attributes={"order.id": "9"},
        ),
        SpanRecord(
            trace_id="1" * 32,
            span_id="2" * 16,
            name="b",
            start_ns=3,
            end_ns=4,
            parent_span_id="1" * 16,
            attributes={"saga.id": "zzz"},
        ),
        SpanRecord(
            trace_id="2" * 32,
            span_id="3" * 16,
            name="c",
            start_ns=5,
            end_ns=6,
            attributes={"saga.id": "aaa"},
            links=[{"trace_id": "1" * 32, "span_id": "2" * 16}],
        ),
    ]
    config = SagaConfig.from_dict({"correlation": [{"attribute": "order.id"}]})
    result = analyze(spans, [], [], config, 10)
    assert [s.saga_key for s in result.sagas] == ["saga.id:aaa"]
    assert result.identity == {
        "saga.id:aaa": "saga.id:aaa",
        "saga.id:zzz": "saga.id:aaa",
        "order.id:9": "saga.id:aaa",
    }


def test_logs_join_their_span_and_step():
    sample = build_saga("temporal", "compensated", seed=1)
    result = analyze(sample.spans, sample.logs, sample.events, SagaConfig(), sample.now_ns)
    assert all(result.membership[log.ref] == result.sagas[0].saga_key for log in sample.logs)
    failed = next(s for s in result.steps if s.outcome == "failed")
    run = next(s for s in sample.spans if s.name == "RunActivity:ChargePayment")
    (log,) = [log for log in sample.logs if log.span_id == run.span_id]
    assert log.ref in failed.records


def test_p99_nearest_rank():
    assert p99(list(range(1, 101))) == 99
    assert p99([5]) == 5


def test_learned_percentile_sets_the_stall_threshold_and_terminal_steps():
    history = build_population(
        60, seed=2, shapes=("saga_convention",), scenario_weights={"healthy": 1.0}
    )
    config = SagaConfig()
    learned = learn_stats(
        analyze(history.spans, history.logs, history.events, config, history.now_ns)
    )
    stats = learned.transition("OrderSaga", "reserve_inventory->charge_payment")
    assert stats is not None and stats.samples == 60
    assert learned.terminal_steps["OrderSaga"] == frozenset({"ship_order"})

    stalled = build_saga("saga_convention", "stalled", seed=9)
    now = stalled.last_ns + 30 * 10**9  # 30 s: far below 5m, far above 3 x p99 (< 2 s)
    result = analyze(stalled.spans, [], [], config, now, learned)
    saga = result.sagas[0]
    assert saga.status == "stalled"
    assert "learned p99 over 60 samples" in saga.explanation
    assert "waiting for the step after reserve_inventory" in saga.explanation
    assert analyze(stalled.spans, [], [], config, now).sagas[0].status == "running"

    # terminal steps learned from history complete a saga that carries no end signal
    healthy = build_saga("saga_convention", "healthy", seed=9)
    without_root = [s for s in healthy.spans if s.name != "OrderSaga"]
    assert analyze(without_root, [], [], config, healthy.now_ns).sagas[0].status == "stalled"
    assert (
        analyze(without_root, [], [], config, healthy.now_ns, learned).sagas[0].status
        == "completed"
    )


def test_declared_timeout_beats_default():
    sample = build_saga("temporal", "stalled", seed=4)
    config = SagaConfig.from_dict(
        {
            "sagas": {
                "OrderWorkflow": {
                    "steps": [
                        {"name": "ReserveInventory"},
                        {"name": "ChargePayment", "timeout": "30s"},
                    ]
                }
            }
        }
    )
    result = analyze(sample.spans, [], [], config, sample.last_ns + 60 * 10**9)
    assert result.sagas[0].status == "stalled"
    assert "(threshold 30s, declared timeout)" in result.sagas[0].explanation


def test_failed_saga_waits_for_compensation_before_calling_it_missing():
    sample = build_saga("cloudevents", "compensation_missing", seed=5)
    config = SagaConfig.from_dict({"sagas": {"OrderSaga": {"fails_on": ["ShippingFailed"]}}})
    early = analyze(sample.spans, [], sample.events, config, sample.last_ns + 10**9)
    assert early.sagas[0].status == "running"
    assert "compensating, waiting for compensation PaymentRefunded" in early.sagas[0].explanation
    late = analyze(sample.spans, [], sample.events, config, sample.last_ns + 10 * MINUTE_NS)
    assert late.sagas[0].status == "compensation_missing"


def test_compensating_a_saga_that_did_not_fail():
    sample = build_saga("saga_convention", "healthy", seed=6)
    extra = build_saga("saga_convention", "compensated", seed=6)
    release = next(s for s in extra.spans if s.name == "release_inventory")
    saga_id = next(s.attributes["saga.id"] for s in sample.spans if "saga.id" in s.attributes)
    release.attributes["saga.id"] = saga_id
    release.trace_id = sample.spans[0].trace_id
    release.parent_span_id = ""
    result = analyze([*sample.spans, release], [], [], SagaConfig(), sample.now_ns)
    kinds = {f.kind: f for f in result.findings}
    assert "ran although the saga did not fail" in kinds["unexpected_compensation"].explanation
