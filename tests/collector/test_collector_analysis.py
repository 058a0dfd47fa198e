"""Incremental analysis inside a running collector, and the saga query API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.store.queries import QueryError, SagaFilter, build_saga_list, build_saga_where
from tests.conftest import RunningCollector, running_collector, wait_for

NOW = time.time_ns()


def _attrs(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"stringValue": v}} for k, v in values.items()]


def _span(
    trace: str,
    span: str,
    name: str,
    start_s: float,
    attrs: dict[str, Any],
    error: bool = False,
    links: list[tuple[str, str]] | None = None,
    kind: int = 2,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace,
        "spanId": span,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(int(NOW + start_s * 1e9)),
        "endTimeUnixNano": str(int(NOW + (start_s + 0.1) * 1e9)),
        "attributes": _attrs(attrs),
        "status": {"code": 2 if error else 1},
    }
    if links:
        out["links"] = [{"traceId": t, "spanId": s} for t, s in links]
    return out


def _send(c: RunningCollector, service: str, *spans: dict[str, Any]) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": _attrs({"service.name": service})},
                "scopeSpans": [{"spans": list(spans)}],
            }
        ]
    }
    r = httpx.post(
        c.url + "/v1/traces",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def _sagas(c: RunningCollector, **params: Any) -> list[dict[str, Any]]:
    return list(c.get("/api/v1/sagas", **params)["sagas"])


def _step(saga: str, step: str, kind: str = "action", **extra: str) -> dict[str, str]:
    return {
        "saga.id": saga,
        "saga.name": "OrderSaga",
        "saga.step": step,
        "saga.step.type": kind,
        **extra,
    }


def test_saga_spread_over_requests_and_services_becomes_one_compensated_saga(
    collector: RunningCollector,
) -> None:
    _send(
        collector,
        "inventory",
        _span("a" * 32, "1" * 16, "reserve_inventory", 0, _step("o-1", "reserve_inventory")),
    )
    wait_for(lambda: _sagas(collector))
    _send(
        collector,
        "payments",
        _span("b" * 32, "2" * 16, "charge_payment", 1, _step("o-1", "charge_payment"), error=True),
    )
    _send(
        collector,
        "inventory",
        _span(
            "c" * 32,
            "3" * 16,
            "release_inventory",
            2,
            _step(
                "o-1",
                "release_inventory",
                "compensation",
                **{"saga.compensates": "reserve_inventory"},
            ),
        ),
    )

    def settled() -> dict[str, Any] | None:
        rows = _sagas(collector)
        return rows[0] if len(rows) == 1 and rows[0]["status"] == "compensated" else None

    saga = wait_for(settled)
    assert sorted(saga["trace_ids"]) == ["a" * 32, "b" * 32, "c" * 32]
    assert sorted(saga["services"]) == ["inventory", "payments"]
    detail = collector.get(f"/api/v1/sagas/{saga['saga_key']}")
    assert [s["name"] for s in detail["steps"]] == [
        "reserve_inventory",
        "charge_payment",
        "release_inventory",
    ]
    assert [s["step_type"] for s in detail["steps"]] == ["action", "action", "compensation"]
    assert len(detail["spans"]) == 3


def test_consumer_trace_arriving_before_its_linked_producer_joins_the_saga(
    collector: RunningCollector,
) -> None:
    producer_trace, consumer_trace = "d" * 32, "e" * 32
    # The consumer's trace carries no saga key of its own; only a link to the producer.
    _send(
        collector,
        "shipping",
        _span(
            consumer_trace,
            "5" * 16,
            "ship_order",
            2,
            {},
            links=[(producer_trace, "4" * 16)],
            kind=5,
        ),
    )
    time.sleep(1.0)
    assert _sagas(collector) == []
    _send(
        collector,
        "orders",
        _span(producer_trace, "4" * 16, "place_order", 0, _step("o-2", "place_order"), kind=4),
    )

    saga = wait_for(
        lambda: (rows := _sagas(collector)) and consumer_trace in rows[0]["trace_ids"] and rows[0]
    )
    assert sorted(saga["trace_ids"]) == [producer_trace, consumer_trace]
    assert "shipping" in saga["services"]


def test_missing_compensation_is_reported_with_explanation_and_evidence(tmp_path: Path) -> None:
    config = tmp_path / "sagalens.yaml"
    config.write_text(
        "stall_after: 1s\n"
        "sagas:\n"
        "  OrderSaga:\n"
        "    steps:\n"
        "      - {name: reserve_inventory, compensation: release_inventory}\n"
        "      - {name: charge_payment, compensation: refund_payment}\n"
        "      - {name: ship_order}\n"
        "    completes_on: [ship_order]\n"
    )
    with running_collector(tmp_path, config=str(config)) as c:
        _send(
            c,
            "orders",
            _span("f" * 32, "6" * 16, "reserve_inventory", -30, _step("o-3", "reserve_inventory")),
            _span("f" * 32, "7" * 16, "charge_payment", -29, _step("o-3", "charge_payment")),
            _span("f" * 32, "8" * 16, "ship_order", -28, _step("o-3", "ship_order"), error=True),
        )
        saga = wait_for(lambda: (rows := _sagas(c, status="compensation_missing")) and rows[0])
        assert "reserve_inventory" in saga["explanation"]
        findings = c.get("/api/v1/findings", kind="missing_compensation")["findings"]
        assert {f["step"] for f in findings} == {"reserve_inventory", "charge_payment"}
        assert all(f["evidence"] and f["explanation"] for f in findings)
        assert _sagas(c, finding="missing_compensation")[0]["saga_key"] == saga["saga_key"]


def test_open_saga_becomes_stalled_without_new_records(tmp_path: Path) -> None:
    config = tmp_path / "sagalens.yaml"
    config.write_text("stall_after: 2s\n")
    with running_collector(tmp_path, "--sweep-interval", "1", config=str(config)) as c:
        started = (time.time_ns() - NOW) / 1e9  # now, not when the module was imported
        _send(
            c,
            "inventory",
            _span(
                "9" * 32, "a" * 16, "reserve_inventory", started, _step("o-4", "reserve_inventory")
            ),
        )
        wait_for(lambda: _sagas(c, status="running"))
        # No new records: the periodic sweep must notice the stall on its own.
        saga = wait_for(lambda: (rows := _sagas(c, status="stalled")) and rows[0], timeout=20)
        assert saga["saga_key"].endswith("o-4")
        stall = c.get("/api/v1/findings", kind="stall")["findings"]
        assert len(stall) == 1 and "reserve_inventory" in stall[0]["explanation"]


@pytest.mark.parametrize(
    ("path", "query", "fragment"),
    [
        ("sagas", {"status": "nonsense"}, "unknown status"),
        ("sagas", {"sort": "colour"}, "unknown sort"),
        ("sagas", {"limit": "0"}, "limit must be between 1 and 1000, got 0"),
        ("sagas", {"limit": "x"}, "integer"),
        ("sagas", {"limit": "\u00b2"}, "limit must be an integer"),
        ("sagas", {"offset": str(2**64)}, "offset must be between 0 and"),
        ("sagas", {"offset": "-1"}, "offset must be between 0 and"),
        ("sagas", {"order": "bogus"}, "order must be asc or desc, got 'bogus'"),
        ("sagas", {"finding": "bogus"}, "unknown finding kind"),
        ("sagas", {"from": "yesterday"}, "ISO 8601"),
        ("sagas", {"from": "\u00b2"}, "ISO 8601"),
        ("sagas", {"to": str(2**64)}, "to must lie between 1970 and 2262"),
        ("sagas", {"from": "9999-01-01"}, "from must lie between 1970 and 2262"),
        ("sagas", {"details": "please"}, "details must be 1 or 0"),
        ("sagas", {"from": "2026-01-02", "to": "2026-01-01"}, "from is later than to"),
        ("findings", {"offset": "-1"}, "offset must be between 0 and"),
        ("findings", {"limit": "5000"}, "limit must be between 1 and 1000"),
        ("rejections", {"limit": "-1"}, "limit must be between 1 and 1000, got -1"),
        ("rejections", {"limit": str(2**70)}, "limit must be between 1 and 1000"),
    ],
)
def test_api_rejects_bad_filters_clearly(
    collector: RunningCollector, path: str, query: dict[str, str], fragment: str
) -> None:
    r = httpx.get(f"{collector.url}/api/v1/{path}", params=query)
    assert r.status_code == 400
    assert fragment in r.json()["error"]


def test_api_answers_an_unknown_path_or_method_in_json(collector: RunningCollector) -> None:
    missing = httpx.get(collector.url + "/api/v1/saga")
    assert missing.status_code == 404
    assert "Not Found: GET /api/v1/saga; the query API has " in missing.json()["error"]
    assert "/api/v1/sagas/{key}," in missing.json()["error"]
    wrong = httpx.delete(collector.url + "/api/v1/sagas")
    assert wrong.status_code == 405 and "Method Not Allowed" in wrong.json()["error"]
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_saga_pages_with_details_match_each_saga_and_the_file_read_offline(
    tmp_path: Path,
) -> None:
    from collector.client import ApiSource, DbSource

    config = tmp_path / "sagalens.yaml"
    config.write_text(
        "stall_after: 1s\nsagas:\n  OrderSaga:\n    steps:\n"
        "      - {name: reserve, compensation: release}\n"
        "      - {name: charge}\n"
        "    completes_on: [charge]\n"
    )
    with running_collector(tmp_path, "--sweep-interval", "1", config=str(config)) as c:
        for n in range(5):
            trace, saga = f"{n + 1:032x}", f"o-{n}"
            # Every other charge fails and nothing is undone: a finding for the page to carry.
            _send(
                c,
                "shop",
                _span(trace, "1" * 16, "reserve", -30, _step(saga, "reserve")),
                _span(trace, "2" * 16, "charge", -29, _step(saga, "charge"), error=n % 2 == 1),
            )
        wait_for(lambda: c.get("/api/v1/sagas", status="completed")["total"] == 3, timeout=20)
        wait_for(lambda: c.get("/api/v1/findings")["total"] == 2, timeout=20)

        # Two at a time after a key cursor: each saga once, in key order, with the steps and
        # findings its own page shows.
        pages, after = [], ""
        while rows := c.get(
            "/api/v1/sagas", details=1, sort="key", order="asc", limit=2, after=after
        )["sagas"]:
            pages.append([r["saga_key"] for r in rows])
            for row in rows:
                alone = c.get(f"/api/v1/sagas/{row['saga_key']}", records=0)
                assert row == alone
            after = rows[-1]["saga_key"]
        keys = [k for page in pages for k in page]
        assert [len(p) for p in pages] == [2, 2, 1] and keys == sorted(keys)
        assert sum(len(r["findings"]) for r in ApiSource(c.url).iter_sagas({})) == 2
        assert "steps" not in c.get("/api/v1/sagas")["sagas"][0]
        live = list(ApiSource(c.url).iter_sagas({"status": "compensation_missing"}))
    offline = DbSource(str(c.db)).iter_sagas({"status": "compensation_missing"})
    assert len(live) == 2
    assert live == json.loads(json.dumps(list(offline), default=str))


def test_an_attempt_number_no_step_could_reach_is_ignored(collector: RunningCollector) -> None:
    # It used to overflow the steps table's column and fail every pass from then on.
    huge = _step("o-8", "reserve", **{"saga.step.attempt": "99999999999999999999999"})
    _send(collector, "orders", _span("8" * 32, "8" * 16, "reserve", 0, huge))
    retried = _step("o-9", "reserve", **{"saga.step.attempt": "3"})
    _send(collector, "orders", _span("7" * 32, "7" * 16, "reserve", 0, retried))
    wait_for(lambda: len(_sagas(collector)) == 2)
    attempts = {
        key: collector.get(f"/api/v1/sagas/saga.id:{key}")["steps"][0]["attempts"]
        for key in ("o-8", "o-9")
    }
    assert attempts == {"o-8": 1, "o-9": 3}
    assert _metric(collector, "sagalens_analysis_failures_total") == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"action": "a.b", "details": {"x": NaN}}', "no NaN"),
        ('{"action": "a.b", "details": {"x": 1e999}}', "no Infinity"),
        ('{"action": "a.b", "actor": "\\ud800"}', "unpaired surrogate"),
        ('{"action": "a.b\\n"}', "area.verb"),
        ('{"action": "a.b", "actor": 7}', "'actor' must be a string"),
    ],
)
def test_audit_entries_that_would_not_verify_are_refused_and_not_written(
    collector: RunningCollector, body: str, fragment: str
) -> None:
    r = httpx.post(
        collector.url + "/api/v1/audit",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and fragment in r.json()["error"], r.text
    log = collector.get("/api/v1/audit")
    assert log["verified"] is True
    assert [e["action"] for e in log["entries"]] == ["config.loaded"]


def test_api_unknown_saga_is_404(collector: RunningCollector) -> None:
    r = httpx.get(collector.url + "/api/v1/sagas/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]


@pytest.mark.parametrize(
    ("f", "where", "params"),
    [
        (SagaFilter(), "", []),
        (SagaFilter(status=("stalled",)), " WHERE status IN (?)", ["stalled"]),
        (
            SagaFilter(status=("failed", "compensated"), saga_type=("OrderSaga",)),
            " WHERE status IN (?, ?) AND saga_type IN (?)",
            ["failed", "compensated", "OrderSaga"],
        ),
        (SagaFilter(service="payments"), " WHERE list_contains(services, ?)", ["payments"]),
        (
            SagaFilter(from_ns=5, to_ns=9),
            " WHERE greatest(ended_ns, last_progress_ns) >= ? AND started_ns <= ?",
            [5, 9],
        ),
        (
            SagaFilter(finding_kind="stall"),
            " WHERE saga_key IN (SELECT saga_key FROM findings WHERE kind = ? AND "
            "acknowledged_ns IS NULL)",
            ["stall"],
        ),
        (SagaFilter(after="order-7"), " WHERE saga_key > ?", ["order-7"]),
    ],
)
def test_build_saga_where(f: SagaFilter, where: str, params: list[Any]) -> None:
    assert build_saga_where(f) == (where, params)


def test_build_saga_list_orders_and_pages() -> None:
    sql, params = build_saga_list(SagaFilter(sort="steps", descending=False, limit=10, offset=20))
    assert sql.endswith("ORDER BY step_count ASC, saga_key LIMIT ? OFFSET ?")
    assert params == [10, 20]
    with pytest.raises(QueryError, match="offset"):
        build_saga_list(SagaFilter(offset=-1))


@pytest.mark.parametrize("descending", [True, False])
def test_sorting_by_duration_runs_open_sagas_to_now(descending: bool) -> None:
    import duckdb

    from collector.store.queries import Reader
    from collector.store.writer import migrate

    conn = duckdb.connect()
    migrate(conn)
    now, sec = 10_000 * 10**9, 10**9
    for key, status, started, ended, last in [
        ("stalled-40m", "stalled", now - 2400 * sec, 0, now - 2399 * sec),  # 40 min so far
        ("running-2m", "running", now - 120 * sec, 0, now - 119 * sec),  # 2 min so far
        ("completed-10m", "completed", now - 900 * sec, now - 300 * sec, now - 300 * sec),
        ("failed-5s", "failed", now - 60 * sec, 0, now - 55 * sec),  # ended, no end recorded
    ]:
        conn.execute(
            "INSERT INTO sagas (saga_key, saga_type, status, started_ns, ended_ns, "
            "last_progress_ns) VALUES (?, 'OrderSaga', ?, ?, ?, ?)",
            [key, status, started, ended, last],
        )
    rows, _ = Reader(conn).list_sagas(
        SagaFilter(sort="duration", descending=descending, now_ns=now)
    )
    longest_first = ["stalled-40m", "completed-10m", "running-2m", "failed-5s"]
    assert [r["saga_key"] for r in rows] == (longest_first if descending else longest_first[::-1])


def test_reading_every_saga_page_by_page_survives_sagas_stored_meanwhile() -> None:
    import duckdb

    from collector.store.queries import Reader
    from collector.store.writer import migrate

    conn = duckdb.connect()
    migrate(conn)

    def store(*keys: str) -> None:
        for key in keys:
            conn.execute(
                "INSERT INTO sagas (saga_key, saga_type, status) VALUES (?, 'OrderSaga', 'running')",
                [key],
            )
            conn.execute(
                "INSERT INTO steps (saga_key, seq, name, step_type, outcome) "
                "VALUES (?, 0, 'reserve', 'action', 'ok')",
                [key],
            )

    store("b", "d", "f", "h", "j")
    seen = []
    for saga in Reader(conn).iter_sagas(SagaFilter(), page=2):
        seen.append(saga["saga_key"])
        assert [s["name"] for s in saga["steps"]] == ["reserve"] and saga["findings"] == []
        if saga["saga_key"] == "d":
            # Stored between pages: one before the cursor, one after it.
            store("a", "e")
    # Offsets would have given "d" twice: "a" moves every later saga one place on.
    assert seen == ["b", "d", "e", "f", "h", "j"]


def test_acknowledgement_and_report_export_land_in_a_verifiable_audit_log(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "sagalens.yaml"
    config.write_text("stall_after: 1s\n")
    with running_collector(tmp_path, config=str(config)) as c:
        _send(
            c,
            "inventory",
            _span("9" * 32, "b" * 16, "reserve_inventory", -60, _step("o-5", "reserve_inventory")),
        )
        finding = wait_for(lambda: c.get("/api/v1/findings")["findings"])[0]
        r = httpx.post(
            f"{c.url}/api/v1/findings/{finding['finding_id']}/ack",
            json={"by": "alice", "note": "paged the payments team"},
        )
        assert r.status_code == 200 and r.json()["action"] == "finding.acknowledged"
        again = httpx.post(
            f"{c.url}/api/v1/findings/{finding['finding_id']}/ack", json={"by": "mallory"}
        )
        assert again.status_code == 409 and "already acknowledged by 'alice'" in again.text
        not_text = httpx.post(f"{c.url}/api/v1/findings/x/ack", json={"by": ["a"]})
        assert not_text.status_code == 400 and "'by' must be a string" in not_text.text
        assert httpx.post(f"{c.url}/api/v1/findings/nope/ack", json={"by": "a"}).status_code == 404
        assert httpx.post(f"{c.url}/api/v1/findings/x/ack", json={}).status_code == 400
        assert c.get("/api/v1/findings")["total"] == 0  # acknowledged findings leave the open list

        out = tmp_path / "report.json"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "collector",
                "report",
                "--collector",
                c.url,
                "--format",
                "json",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        log = c.get("/api/v1/audit")
        assert [e["action"] for e in log["entries"]] == [
            "config.loaded",
            "finding.acknowledged",
            "report.exported",
        ]
        assert log["verified"] is True
        assert log["entries"][2]["details"]["data_digest"] in done.stdout


def test_benchmark_batches_analyse_without_a_failed_pass(tmp_path: Path) -> None:
    # The ingest benchmark's sagas repeat every step in four services: duplicate steps and
    # compensations reported four times, which must make one finding each, not a pass
    # that fails on the findings table's key and loses every saga it held.
    from benchmarks.ingest import make_requests

    with running_collector(tmp_path) as c:
        for body in make_requests(2, offset=77):
            r = httpx.post(
                c.url + "/v1/traces",
                content=body,
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert r.status_code == 200
        wait_for(lambda: c.get("/api/v1/sagas")["total"] == 64, timeout=30)
        findings = c.get("/api/v1/findings", limit=1000)["findings"]
        assert len({f["finding_id"] for f in findings}) == len(findings)
        unexpected = [f for f in findings if f["kind"] == "unexpected_compensation"]
        assert len({f["saga_key"] for f in unexpected}) == 64
        assert all(len(f["evidence"]) == 4 for f in unexpected)
        metrics = httpx.get(c.url + "/metrics").text
        assert "sagalens_analysis_failures_total 0.0" in metrics


def _metric(c: RunningCollector, name: str) -> float:
    for line in httpx.get(c.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_a_collector_with_analysis_off_leaves_the_stored_sagas_alone(tmp_path: Path) -> None:
    db = tmp_path / "kept.duckdb"
    with running_collector(tmp_path, db=db) as c:
        _send(c, "orders", _span("3" * 32, "3" * 16, "reserve", -60, _step("o-7", "reserve")))
        wait_for(lambda: _sagas(c, status="running"))
    config = tmp_path / "sagalens.yaml"
    config.write_text("stall_after: 1s\n")
    # A collector that analyses with this file marks the saga stalled at its first sweep
    # (test_open_saga_becomes_stalled_without_new_records); one with analysis off must not.
    args = ("--no-analysis", "--sweep-interval", "0.2")
    with running_collector(tmp_path, *args, config=str(config), db=db) as c:
        time.sleep(2)
        assert [s["status"] for s in _sagas(c)] == ["running"]
        assert c.get("/api/v1/findings")["total"] == 0
    with running_collector(tmp_path, "--sweep-interval", "0.2", config=str(config), db=db) as c:
        wait_for(lambda: _sagas(c, status="stalled"))


def test_records_stored_while_analysis_was_off_are_analysed_after_a_restart(
    tmp_path: Path,
) -> None:
    # The analysis backlog lives in the store, not in the collector's memory: what a
    # collector stored but did not analyse (here: analysis off) is analysed by the next.
    db = tmp_path / "restart.duckdb"
    with running_collector(tmp_path, "--no-analysis", db=db) as c:
        _send(c, "orders", _span("1" * 32, "1" * 16, "reserve_inventory", 0, _step("o-9", "a")))
        _send(c, "payments", _span("2" * 32, "2" * 16, "charge_payment", 1, _step("o-9", "b")))
        assert _metric(c, "sagalens_analysis_backlog") == 2
        assert _sagas(c) == []
    with running_collector(tmp_path, db=db) as c:
        saga = wait_for(lambda: (rows := _sagas(c)) and rows[0])
        assert sorted(saga["trace_ids"]) == ["1" * 32, "2" * 32]
        assert wait_for(lambda: _metric(c, "sagalens_analysis_backlog") == 0)
        assert _metric(c, "sagalens_analysis_lag_seconds") == 0


def _step_names(c: RunningCollector, saga_key: str) -> list[str]:
    return [s["name"] for s in c.get(f"/api/v1/sagas/{saga_key}", records=0)["steps"]]


def test_changed_saga_definitions_analyse_the_stored_sagas_again(tmp_path: Path) -> None:
    # Stored sagas were analysed under the definitions of the collector that stored them; a
    # collector started with other definitions must not leave them as they were.
    db = tmp_path / "definitions.duckdb"
    release = _step("o-11", "release_inventory", "compensation")
    with running_collector(tmp_path, db=db) as c:
        # A saga that ended (compensated): no sweep looks at it again.
        _send(
            c,
            "orders",
            _span("4" * 32, "4" * 16, "reserve_inventory", 0, _step("o-11", "reserve_inventory")),
            _span("4" * 32, "5" * 16, "charge_payment", 1, _step("o-11", "pay"), error=True),
            _span("4" * 32, "6" * 16, "release_inventory", 2, release),
        )
        key = wait_for(lambda: (rows := _sagas(c, status="compensated")) and rows[0]["saga_key"])
        assert _step_names(c, key)[0] == "reserve_inventory"
    config = tmp_path / "sagalens.yaml"
    config.write_text("sagas:\n  OrderSaga:\n    steps:\n      - name: ReserveInventory\n")
    with running_collector(tmp_path, config=str(config), db=db) as c:
        wait_for(lambda: _step_names(c, key)[0] == "ReserveInventory")
        assert wait_for(lambda: _metric(c, "sagalens_analysis_backlog") == 0)
        assert "reanalysis" not in c.get("/api/v1/overview")["analysis"]
        log = c.log.read_text()
        assert "analysing the stored sagas again (1 trace): the saga definitions changed" in log
    # The same definitions again: nothing is analysed twice.
    with running_collector(tmp_path, config=str(config), db=db) as c:
        assert _metric(c, "sagalens_analysis_backlog") == 0
        assert _step_names(c, key)[0] == "ReserveInventory"
        assert "again" not in c.log.read_text()
