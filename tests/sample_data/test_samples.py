"""The sample systems against a really started collector, DemoTraffic, and the recorded files."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector.analysis.config import SagaConfig
from collector.normalize.cloudevents import Envelope, decode_items
from collector.normalize.otlp import decode_otlp_json_object
from sample_data import DEMO_CONFIG, RECORDED_EVENTS, RECORDED_TRACES
from sample_data.choreographed import LocalBus, Shop, run_choreographed
from sample_data.orchestrated import OrderServices, run_orchestrated
from sample_data.outcomes import OUTCOMES, Expected, parse_faults
from sample_data.publish import BatchPoster, EventList
from sample_data.record import record
from sample_data.telemetry import (
    Telemetry,
    encode_otlp_json,
    otlp_grpc_exporter,
    otlp_http_exporter,
)
from sample_data.traffic import DemoTraffic
from tests.conftest import RunningCollector, require_service, running_collector, wait_for

N_SAGAS = 40
HOUR_NS = 3600 * 1_000_000_000


@pytest.fixture(scope="module")
def demo_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with running_collector(tmp_path_factory.mktemp("samples"), config=str(DEMO_CONFIG)) as c:
        yield c


def _sagas(collector: RunningCollector) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page = collector.get("/api/v1/sagas", limit=1000, offset=offset)
        out.update({s["saga_key"]: s for s in page["sagas"]})
        offset += 1000
        if offset >= page["total"]:
            return out


def _findings(collector: RunningCollector) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {}
    offset = 0
    while True:
        page = collector.get("/api/v1/findings", limit=1000, offset=offset)
        for f in page["findings"]:
            out.setdefault(f["saga_key"], set()).add((f["kind"], f["step"]))
        offset += 1000
        if offset >= page["total"]:
            return out


def _mismatches(
    truth: dict[str, Expected], sagas: dict[str, dict[str, Any]]
) -> list[tuple[str, str, str | None]]:
    return [
        (key, e.status, sagas[key]["status"] if key in sagas else None)
        for key, e in truth.items()
        if key not in sagas
        or sagas[key]["status"] != e.status
        # analysis follows arrival: the span naming the order may land after the status settles
        or f"order.id={e.order_id}" not in sagas[key]["business_keys"]
    ]


def _assert_matches_truth(collector: RunningCollector, truth: dict[str, Expected]) -> None:
    # every outcome is drawn at least once with this many sagas, so each rule is exercised
    assert {e.status for e in truth.values()} == set(OUTCOMES)
    wait_for(lambda: not _mismatches(truth, _sagas(collector)), timeout=20, interval=0.5)
    sagas = _sagas(collector)
    findings = _findings(collector)
    for key, expected in truth.items():
        saga, found = sagas[key], findings.get(key, set())
        if expected.status == "compensation_missing":
            assert ("missing_compensation", expected.step) in found, (key, found)
        elif expected.status == "compensation_failed":
            assert ("compensation_failed", expected.step) in found, (key, found)
        elif expected.status == "stalled":
            assert saga["waiting_for"] == expected.step, (key, saga)
            assert ("stall", expected.step) in found, (key, found)
        else:
            assert not found, (key, saga["explanation"], found)
        assert f"order.id={expected.order_id}" in saga["business_keys"], saga


def test_orchestrated_system_over_grpc(demo_collector: RunningCollector) -> None:
    telemetry = Telemetry(otlp_grpc_exporter(demo_collector.grpc), rng=random.Random(7))
    with OrderServices(telemetry) as services:
        # an hour ago, so sagas that hang are already past every stall threshold
        truth = run_orchestrated(services, N_SAGAS, seed=7, start_ns=time.time_ns() - HOUR_NS)
    telemetry.shutdown()
    assert {k.split(":", 1)[0] for k in truth} == {"saga.id", "temporal.workflow"}
    _assert_matches_truth(demo_collector, truth)
    rules = {s["identity_rule"] for k, s in _sagas(demo_collector).items() if k in truth}
    assert rules == {"saga.id", "temporal"}
    # a transient error retried by the orchestrator is one step with two attempts, not a failure
    retried = {k: e.retried for k, e in truth.items() if e.retried}
    assert retried
    for key, step in retried.items():
        steps = demo_collector.get(f"/api/v1/sagas/{key}")["steps"]
        assert [s["attempts"] for s in steps if s["name"] == step] == [2], (key, steps)


def test_orchestrated_services_answer_over_http() -> None:
    with OrderServices(Telemetry(rng=random.Random(2))) as services:
        url = services.url("payments") + "/payments/charges"
        call = {"step": "charge", "order_id": "o-1", "attempt": 1, "at": 10**18}
        assert services.client.post(url, json={**call, "fault": ""}).status_code == 200
        declined = services.client.post(url, json={**call, "fault": "fail"})
        assert declined.status_code == 402 and declined.json()["error"] == "PaymentDeclined"
        wrong = services.client.post(services.url("shipping") + "/shipments", json=call)
        assert wrong.status_code == 404
        assert services.client.post(url, content=b"{").status_code == 400
        with pytest.raises(httpx.TransportError):  # a frozen service never answers
            services.client.post(url, json={**call, "fault": "hang"})


def test_choreographed_system_over_http(demo_collector: RunningCollector) -> None:
    telemetry = Telemetry(otlp_http_exporter(demo_collector.url), rng=random.Random(8))
    poster = BatchPoster(demo_collector.url, max_batch=50)
    shop = Shop(telemetry, LocalBus(poster))
    truth = run_choreographed(shop, N_SAGAS, seed=8, start_ns=time.time_ns() - HOUR_NS)
    poster.flush()
    poster.close()
    telemetry.shutdown()
    assert poster.sent > 4 * N_SAGAS
    _assert_matches_truth(demo_collector, truth)
    sagas = _sagas(demo_collector)
    completed = next(s for k, s in sagas.items() if k in truth and s["status"] == "completed")
    # partial traces: two traced services, several traces joined by links and traceparent
    assert {"checkout", "billing"} <= set(completed["services"])
    assert len(completed["trace_ids"]) >= 2


def test_demo_traffic_starts_produces_and_stops(demo_collector: RunningCollector) -> None:
    traffic = DemoTraffic(demo_collector.url, demo_collector.grpc, rate=10.0, seed=3).start()
    try:
        wait_for(lambda: traffic.generated >= 12, timeout=10)
    finally:
        began = time.monotonic()
        traffic.stop()
        assert time.monotonic() - began < 10
    assert traffic.errors == 0
    systems = {e.system for e in traffic.truth.values()}
    assert systems == {"orchestrated", "choreographed"}

    def seen() -> bool:
        sagas = _sagas(demo_collector)
        return all(k in sagas for k in traffic.truth)

    wait_for(seen, timeout=20, interval=0.5)
    generated = traffic.generated
    time.sleep(0.5)
    assert traffic.generated == generated  # really stopped


def test_demo_traffic_survives_a_missing_collector() -> None:
    traffic = DemoTraffic("http://127.0.0.1:9", "127.0.0.1:9", rate=20.0, seed=4).start()
    wait_for(lambda: traffic.generated >= 5, timeout=10)
    began = time.monotonic()
    traffic.stop()
    assert time.monotonic() - began < 20


def test_demo_config_is_valid() -> None:
    config = SagaConfig.from_dict(yaml.safe_load(DEMO_CONFIG.read_text()))
    assert set(config.sagas) == {"OrderSaga", "OrderFulfillment"}
    assert any(step.timeout_ns for step in config.sagas["OrderSaga"].steps)
    assert config.correlation


def test_recorded_files_are_valid() -> None:
    assert RECORDED_TRACES.stat().st_size + RECORDED_EVENTS.stat().st_size < 2_000_000
    spans = 0
    for n, line in enumerate(RECORDED_TRACES.read_text().splitlines(), start=1):
        batch = decode_otlp_json_object(json.loads(line))
        assert batch.spans and not batch.rejections, f"line {n}: {batch.rejections}"
        spans += len(batch.spans)
    assert spans > 1000
    events = [json.loads(line) for line in RECORDED_EVENTS.read_text().splitlines()]
    decoded = decode_items(events, Envelope("file"))
    assert len(decoded.events) == len(events) > 300 and not decoded.rejections
    assert all(e.extensions.get("correlationid") for e in decoded.events)


def test_recorded_files_are_reproducible(tmp_path: Path) -> None:
    truth = record(200, traces=tmp_path / "orders.otlp.jsonl", events=tmp_path / "events.jsonl")
    assert (tmp_path / "orders.otlp.jsonl").read_bytes() == RECORDED_TRACES.read_bytes()
    assert (tmp_path / "events.jsonl").read_bytes() == RECORDED_EVENTS.read_bytes()
    expected = json.loads((RECORDED_TRACES.parent / "expected.json").read_text())
    assert {k: e.status for k, e in truth.items()} == {k: v["status"] for k, v in expected.items()}


def test_samples_encode_to_what_the_collector_decodes() -> None:
    telemetry = Telemetry(rng=random.Random(1))
    sink = EventList()
    run_choreographed(Shop(telemetry, LocalBus(sink)), 3, seed=1, start_ns=1_795_341_600 * 10**9)
    batch = decode_otlp_json_object(encode_otlp_json(telemetry.take_finished()))
    consumers = [s for s in batch.spans if s.kind == 5]
    assert consumers and all(s.links for s in consumers)
    assert all(e["traceparent"].startswith("00-") for e in sink.events)


@pytest.mark.brokers
def test_choreographed_system_on_rabbitmq_seen_through_the_tap(tmp_path: Path) -> None:
    """The shop's services react to each other on RabbitMQ; sagalens sees it through its tap."""
    require_service("RabbitMQ", "127.0.0.1", 5672)
    from sample_data.rabbit import DEFAULT_URL, RabbitBus, declare_tap_queue

    exchange = f"sagalens-test-shop-{uuid.uuid4().hex[:8]}"
    tap_queue = f"sagalens.tap.{exchange}"
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["taps"] = [
        {"kind": "rabbitmq", "url": DEFAULT_URL, "exchange": exchange, "durable": False}
    ]
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(config))
    declare_tap_queue(DEFAULT_URL, exchange, tap_queue)
    telemetry = Telemetry(rng=random.Random(9))
    bus = RabbitBus(DEFAULT_URL, exchange)
    try:
        with running_collector(tmp_path, config=str(tmp_path / "shop.yaml")) as collector:
            telemetry = Telemetry(otlp_http_exporter(collector.url), rng=random.Random(9))
            shop = Shop(telemetry, bus)
            bus.start()
            truth = run_choreographed(shop, N_SAGAS, seed=8, start_ns=time.time_ns() - HOUR_NS)
            # the services' own queues got their copies and reacted: orders reached their end
            wait_for(lambda: bus.delivered >= 3 * N_SAGAS, timeout=20)
            telemetry.flush()
            _assert_matches_truth(collector, truth)
            assert bus.errors == 0
            key = next(k for k, e in truth.items() if e.status == "completed")
            events = collector.get(f"/api/v1/sagas/{key}")["events"]
            assert events and {e["transport"] for e in events} == {"amqp"}, events
            assert {e["destination"] for e in events} == {f"{exchange}/{e['type']}" for e in events}
    finally:
        bus.close()
        telemetry.shutdown()
        asyncio.run(_delete_exchange(DEFAULT_URL, exchange, tap_queue))


async def _delete_exchange(url: str, exchange: str, *queues: str) -> None:
    import aiormq

    connection = await aiormq.connect(url)
    channel = await connection.channel()
    for name in queues:
        await channel.queue_delete(name)
    await channel.exchange_delete(exchange)
    await connection.close()


def test_fault_rates_are_configurable() -> None:
    weights = parse_faults("compensation_missing=0.5, stalled=0")
    assert weights["compensation_missing"] == 0.5 and weights["stalled"] == 0
    assert abs(sum(weights.values()) - 1) < 1e-9
    only_missing = parse_faults(
        "compensated=0,compensation_missing=1,compensation_failed=0,stalled=0"
    )
    with OrderServices(Telemetry(rng=random.Random(3))) as services:
        truth = run_orchestrated(services, 12, seed=3, start_ns=10**18, faults=only_missing)
    assert {e.status for e in truth.values()} == {"compensation_missing"}
    for spec, reason in [
        ("stalled=2", "between 0 and 1"),
        ("lost=0.1", "expected NAME=SHARE"),
        ("stalled=x", "not a number"),
        ("compensation_missing=0.9", "more than 1 (troubles not named keep"),
    ]:
        with pytest.raises(ValueError, match=re.escape(reason)):
            parse_faults(spec)
