"""Every page rendered with AppTest against a really started collector holding sample sagas."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from streamlit.testing.v1 import AppTest

import sample_data
from dashboard import data
from dashboard.export import AUDIT_LOG_FILE, export_audit_log_zip, export_saga_zip
from dashboard.format import display_key
from dashboard.report import verify
from tests.conftest import RunningCollector, free_port, running_collector, wait_for
from tests.dashboard.fixtures import (
    EXPECTED_STATUS,
    MIN,
    UNICODE_KEY,
    TraceBuilder,
    compensated_saga,
    completed_saga,
    sample_sagas,
)
from tests.dashboard.reportdata import AUDIT_ENTRIES, audit_store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
KEYS = {k: f"saga.id:{k}" for k in EXPECTED_STATUS}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCollector]:
    with running_collector(
        tmp_path_factory.mktemp("filled"), config=str(_config(tmp_path_factory))
    ) as c:
        r = httpx.post(c.url + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        assert r.status_code == 200, r.text

        def analysed() -> bool:
            rows = c.get("/api/v1/sagas")["sagas"]
            got = {row["saga_key"]: row["status"] for row in rows}
            return got == {KEYS[k]: v for k, v in EXPECTED_STATUS.items()}

        wait_for(analysed, timeout=15)
        yield c


def _config(factory: pytest.TempPathFactory) -> Path:
    return _config_at(factory.mktemp("config"))


def _app(monkeypatch: pytest.MonkeyPatch, url: str, page: str = "", **params: str) -> AppTest:
    monkeypatch.setenv("SAGALENS_COLLECTOR", url)
    monkeypatch.delenv("SAGALENS_DB", raising=False)
    monkeypatch.delenv("SAGALENS_TOKEN", raising=False)
    at = AppTest.from_file(APP, default_timeout=30)
    if page:
        at.switch_page(page)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def _text(at: AppTest) -> str:
    parts = [
        e.value
        for e in [
            *at.markdown,
            *at.caption,
            *at.info,
            *at.warning,
            *at.error,
            *at.success,
            *at.title,
            *at.subheader,
        ]
    ]
    parts += [str(m.label) + " " + str(m.value) for m in at.metric]
    parts += [str(getattr(e.proto, "label", "")) for e in at.get("page_link")]
    return "\n".join(str(p) for p in parts)


def _shown_values(table: Any) -> dict[str, list[str]]:
    """A table's cells as the page shows them (its formatted text), by column."""
    import pyarrow as pa

    shown = pa.ipc.open_stream(table.proto.arrow_data.styler.display_values).read_all()
    return {name: [str(v) for v in shown.column(name).to_pylist()] for name in shown.column_names}


def _prepare_labels(at: AppTest) -> list[str]:
    """The buttons that make a report to download."""
    return [b.label for b in at.button if b.label.startswith("Prepare ")]


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_overview_counts_and_links(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url)
    assert not at.exception
    m = _metrics(at)
    assert m["Sagas"] == "5"
    assert m["Stalled"] == "1"
    assert m["Never undone"] == "1"
    assert m["Undo failed"] == "0"
    links = [e.proto for e in at.get("page_link")]
    assert any(link.label == "View →" and "status=stalled" in link.query_string for link in links)
    assert any("status=compensation_missing" in link.query_string for link in links)
    text = _text(at)
    assert "order-1004" in text and "order-1003" in text  # worst offenders
    assert "No progress for" in text
    assert len(at.get("plotly_chart")) == 3


def test_sagas_filters_from_url(filled: RunningCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, filled.url, "views/sagas.py", status="compensated")
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["saga"]) == ["order-1002"]
    # what happened and the way to its timeline are in view, not past the table's right edge
    assert list(at.dataframe[0].proto.column_order)[:4] == ["status", "saga", "open", "why"]
    assert "Compensated" in table["status"].iloc[0]
    assert at.multiselect(key="f_status").value == ["compensated"]
    assert "1 saga matches" in _text(at) and "sagas match" not in _text(at)


def test_sagas_search_sort_and_share(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/sagas.py")
    assert len(at.dataframe[0].value) == 5
    at.selectbox(key="f_sort").set_value("key")
    at.toggle(key="f_asc").set_value(True).run()
    assert list(at.dataframe[0].value["saga"])[1:3] == ["order-1001", "order-1002"]
    at.text_input(key="f_q").set_value("1003").run()
    assert list(at.dataframe[0].value["saga"]) == ["order-1003"]
    assert at.query_params["q"] == ["1003"] or at.query_params["q"] == "1003"
    at.text_input(key="f_q").set_value("nothing-like-this").run()
    assert "No sagas match these filters." in _text(at)


def test_open_sagas_last_until_now_and_sort_by_it(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # order-1004 started 40 minutes ago and was last heard of a second later: still stalled.
    at = _app(monkeypatch, filled.url, "views/sagas.py", sort="duration")
    table = at.dataframe[0].value
    assert table["saga"].iloc[0] == "order-1004"
    stalled = table[table["saga"] == "order-1004"]["duration"].iloc[0]
    assert stalled.total_seconds() >= 40 * 60
    assert list(table["duration"]) == sorted(table["duration"], reverse=True)
    # shown as every duration on the dashboard is written, not as '40 min, 12 sec'
    shown = _shown_values(at.dataframe[0])
    durations = dict(zip(shown["saga"], shown["duration"], strict=True))
    assert durations["order-1004"].startswith("40m ")
    assert all(re.fullmatch(r"\d+ ms|\d+\.\d s|\d+m \d\ds", d) for d in durations.values())
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS["order-1004"])
    assert _metrics(at)["Duration"].startswith("40m ")


def test_clear_all_filters_shows_every_saga_again(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/sagas.py", status="compensated", q="nothing")
    assert "No sagas match these filters." in _text(at)
    at.selectbox(key="f_finding").set_value("stall")
    at.selectbox(key="f_window").set_value("1h").run()
    at.button(key=next(b.key for b in at.button if b.label == "Clear all filters")).click().run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 5 and "5 sagas match" in _text(at)
    assert at.text_input(key="f_q").value == "" and at.multiselect(key="f_status").value == []
    assert at.selectbox(key="f_finding").value == "" and at.selectbox(key="f_window").value == ""
    assert "q" not in at.query_params and "status" not in at.query_params


def test_selected_saga_stays_selected_when_new_sagas_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_collector(tmp_path, config=str(_config_at(tmp_path))) as c:
        now = time.time_ns()
        assert httpx.post(c.url + "/v1/traces", json=sample_sagas(now)).status_code == 200
        wait_for(lambda: c.get("/api/v1/sagas")["total"] == 5, timeout=15)
        at = _app(monkeypatch, c.url, "views/sagas.py")
        saga_column = list(at.dataframe[0].value["saga"])
        at.session_state["table"] = {  # what a click on order-1003's row sends
            "selection": {"rows": [saga_column.index("order-1003")], "columns": [], "cells": []}
        }
        at.run()
        assert at.query_params["saga"] in (KEYS["order-1003"], [KEYS["order-1003"]])

        def selected(at: AppTest) -> list[str]:
            shown = list(at.dataframe[0].value["saga"])
            return [shown[i] for i in at.session_state["table"]["selection"]["rows"]]

        assert selected(at) == ["order-1003"]
        # Two newer sagas arrive: they come first, and every older saga moves two rows down.
        b = TraceBuilder()
        completed_saga(b, now - MIN, saga="order-2001")
        compensated_saga(b, now - MIN // 2, saga="order-2002")
        assert httpx.post(c.url + "/v1/traces", json=b.request()).status_code == 200
        wait_for(lambda: c.get("/api/v1/sagas")["total"] == 7, timeout=15)
        data.clear()  # as the auto-refresh finds it once the cached page is stale
        at.run()
        assert list(at.dataframe[0].value["saga"])[:2] == ["order-2002", "order-2001"]
        assert selected(at) == ["order-1003"]
        assert "Open timeline of order-1003" in _text(at)
        # Filtered out of the list: nothing is selected, not whatever took its row.
        at.text_input(key="f_q").set_value("order-1").run()
        assert "order-1003" in list(at.dataframe[0].value["saga"])
        at.text_input(key="f_q").set_value("order-2").run()
        assert selected(at) == []
        assert "saga" not in at.query_params and "Open timeline" not in _text(at)


def test_saga_detail_stalled(filled: RunningCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS["order-1004"])
    assert not at.exception
    text = _text(at)
    assert "Waiting since" in text
    assert "Stall" in text
    steps = at.dataframe[0].value
    assert list(steps["step"]) == ["reserve_inventory"]


def test_saga_detail_missing_compensation(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS["order-1003"])
    assert not at.exception
    text = _text(at)
    assert "Missing compensation" in text
    assert "release_inventory never ran" in text
    steps = at.dataframe[0].value
    assert list(steps["step"]) == [
        "reserve_inventory",
        "charge_payment",
        "ship_order",
        "refund_payment",
    ]
    assert list(steps["outcome"]) == ["ok", "ok", "failed", "ok"]
    assert _metrics(at)["Steps"] == "4"
    assert len(at.get("plotly_chart")) == 1
    # raw records: one table per kind, counted in the tab labels
    labels = [t.label for t in at.tabs]
    assert labels[0].startswith("Spans (") and labels[1].startswith("Events (")
    spans = at.dataframe[1].value
    assert labels[0] == f"Spans ({len(spans)})" and len(spans) >= 5
    assert {"inventory", "shipping"} <= set(spans["service"])
    assert "Select a row to see the whole record" in _text(at)


def test_saga_detail_retries_and_hop(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS["order-1001"])
    steps = at.dataframe[0].value
    assert list(steps["attempts"]) == [1, 2, 1]
    assert (_metrics(at)["Services"], _metrics(at)["Traces"]) == ("4", "2")
    assert "No findings" in _text(at)


def test_saga_detail_counts_event_sources_apart_from_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from collector.cli import main
    from collector.client import open_source

    shipped = Path(sample_data.__file__).parent
    recorded = shipped / "recorded"
    key = "order.id:B-rec-00000"  # choreographed: spans of checkout and billing, and events
    with running_collector(tmp_path, config=str(shipped / "demo.yaml")) as c:
        files = [str(recorded / "orders.otlp.jsonl"), str(recorded / "events.jsonl")]
        result = CliRunner().invoke(main, ["import", *files, "--collector", c.url])
        assert result.exit_code == 0, result.output
        api = open_source(c.url, "", "")

        def analysed() -> dict[str, Any] | None:
            found = api.get_saga(key, True)
            return found if found and found["status"] == "compensation_failed" else None

        saga = wait_for(analysed, timeout=15)
        at = _app(monkeypatch, c.url, "views/saga.py", key=key)
    assert not at.exception
    with_spans = {sp["service_name"] for sp in saga["spans"]}
    sources = set(saga["services"]) - with_spans
    assert with_spans and sources and all(x.startswith("/shop/") for x in sources)
    metrics = _metrics(at)
    assert metrics["Services · event sources"] == f"{len(with_spans)} · {len(sources)}"
    assert metrics["Traces"] == str(len(saga["trace_ids"]))
    # the steps table names an event's source as the header does
    shown = set(at.dataframe[0].value["service"])
    assert {f"{x} (event source)" for x in sources} <= shown and not sources & shown


def test_saga_detail_unknown_and_unicode(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/saga.py", key="saga.id:nope")
    assert "No saga with key" in _text(at)
    # no report of a saga that is not there: a download of it failed without a word
    assert "No audit report to export: there is no saga with key" in _text(at)
    assert not _prepare_labels(at) and not at.get("download_button") and not at.exception
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS[UNICODE_KEY])
    assert not at.exception
    assert "commande-ünïcødé-日本語" in at.title[0].value
    assert "…" in at.title[0].value  # very long key shortened
    assert _prepare_labels(at) == ["Prepare audit report for this saga"]


def test_flow_page(filled: RunningCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, filled.url, "views/flow.py", type="OrderSaga")
    assert not at.exception
    m = _metrics(at)
    assert m["Sagas"] == "4" and m["Compensated"] == "1"  # the stalled one is typed by its steps
    nodes = at.dataframe[0].value
    row = nodes[nodes["step"] == "charge_payment"].iloc[0]
    assert row["runs"] == 3 and row["failure rate"] == "33%"
    assert "definitions file" in _text(at)


def test_findings_page(filled: RunningCollector, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, filled.url, "views/findings.py")
    assert not at.exception
    subheaders = [h.value for h in at.subheader]
    assert "Missing compensation (1)" in subheaders and "Stall (1)" in subheaders
    labels = [e.proto.label for e in at.get("page_link")]
    assert any("order-1003" in label and "reserve_inventory" in label for label in labels)


def test_export_report_zip(filled: RunningCollector) -> None:
    saga = filled.get(f"/api/v1/sagas/{KEYS['order-1003']}")
    blob, details = export_saga_zip(saga, "json", now_ns=time.time_ns(), source="test")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        names = z.namelist()
        body = z.read(names[0]).decode()
        manifest = json.loads(z.read(next(n for n in names if n.endswith(".manifest.json"))))
    assert "release_inventory" in body
    # what the dashboard records in the audit log names the very file it handed out
    assert details["data_digest"] == manifest["data_digest"]
    assert details["sagas"] == 1 and details["format"] == "json"
    assert details["scope"]["saga_key"] == KEYS["order-1003"]


def test_empty_store_and_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_collector(tmp_path) as empty:
        at = _app(monkeypatch, empty.url)
        # the hint names the ports this collector listens on, not the defaults
        assert "No sagas yet" in _text(at) and empty.url in _text(at)
        assert f"{empty.grpc} (gRPC)" in _text(at) and ":4317" not in _text(at)
        at = _app(monkeypatch, empty.url, "views/flow.py")
        assert "No sagas yet" in _text(at) and f"{empty.grpc} (gRPC)" in _text(at)
        at = _app(monkeypatch, empty.url, "views/sagas.py")
        assert f"{empty.grpc} (gRPC)" in _text(at)
        at = _app(monkeypatch, empty.url, "views/findings.py")
        assert "No open findings" in _text(at)
    data.clear()  # what the pages read while the collector ran stays cached for a few seconds
    at = _app(monkeypatch, empty.url, "views/sagas.py")
    assert "Cannot read saga data" in _text(at)
    assert not at.exception


def test_acknowledging_a_finding_records_who_and_clears_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_collector(tmp_path, config=str(_config_at(tmp_path))) as c:
        r = httpx.post(c.url + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        assert r.status_code == 200
        wait_for(lambda: c.get("/api/v1/findings")["total"] >= 2)
        before = c.get("/api/v1/findings")["total"]
        at = _app(monkeypatch, c.url, "views/findings.py")
        button = at.button(key=next(b.key for b in at.button if b.key.startswith("ack-")))
        button.click().run()
        # nobody named: nothing recorded, and the reminder sits right under the name input
        assert c.get("/api/v1/findings")["total"] == before
        shown = _in_order(at)
        at_input = shown.index(("text_input", "Acknowledge as"))
        assert shown[at_input + 1][0] == "warning" and "Enter your name" in shown[at_input + 1][1]
        assert sum(kind == "warning" for kind, _ in shown) == 1
        at.text_input(key="ack_by").input("alice").run()
        assert not at.warning  # named now: the reminder is gone
        at.button(key=button.key).click().run()
        assert not at.exception
        assert c.get("/api/v1/findings")["total"] == before - 1
        entry = c.get("/api/v1/audit")["entries"][-1]
        assert entry["action"] == "finding.acknowledged" and entry["actor"] == "alice"

        # Every page counts the acknowledged finding as no longer open, and the overview's
        # tiles still agree with its status chart.
        saga_key = entry["details"]["saga_key"]
        data.clear()
        saga = c.get(f"/api/v1/sagas/{saga_key}")
        at = _app(monkeypatch, c.url, "views/saga.py", key=saga_key)
        assert _metrics(at)["Open findings"] == str(len(saga["findings"]) - 1)
        assert "Acknowledged by alice" in _text(at)
        at = _app(monkeypatch, c.url, "views/sagas.py", q=display_key(saga_key))
        assert list(at.dataframe[0].value["open findings"]) == [len(saga["findings"]) - 1]
        at = _app(monkeypatch, c.url)
        status = c.get("/api/v1/overview")["status"]
        tiles = {"Stalled": "stalled", "Never undone": "compensation_missing"}
        for label, name in tiles.items():
            assert _metrics(at)[label] == str(status.get(name, 0))
        bars = at.get("plotly_chart")[0].proto.spec
        counts = dict(zip(*(json.loads(bars)["data"][0][axis] for axis in ("y", "x")), strict=True))
        assert counts["Compensation missing"] == status["compensation_missing"] == 1


def _in_order(at: AppTest) -> list[tuple[str, str]]:
    """(element type, text or label) of everything on the page, top to bottom."""
    out: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        children = getattr(node, "children", None)
        if children is not None and not hasattr(node, "value"):
            for child in children.values():
                walk(child)
            return
        text = getattr(node, "label", None) or getattr(node, "value", "")
        out.append((node.type, str(text)))

    walk(at.main)
    return out


def _config_at(tmp_path: Path) -> Path:
    path = tmp_path / "sagalens.yaml"
    path.write_text(
        "sagas:\n  OrderSaga:\n    steps:\n"
        "      - {name: reserve_inventory, compensation: release_inventory}\n"
        "      - {name: charge_payment, compensation: refund_payment}\n"
        "      - {name: ship_order}\n"
        "      - {name: notify_customer}\n"
    )
    return path


def test_period_report_zip_holds_the_filtered_sagas_and_verifies(
    filled: RunningCollector, tmp_path: Path
) -> None:
    from collector.client import ApiSource
    from dashboard.export import export_period_zip
    from dashboard.report import verify

    scope = {"status": "compensation_missing,stalled"}
    api = ApiSource(filled.url)
    blob, details = export_period_zip(
        api.iter_sagas(scope),
        "json",
        now_ns=time.time_ns(),
        source="test",
        filters=scope,
        overview=api.overview(),
    )
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        z.extractall(tmp_path)
        report = next(n for n in z.namelist() if not n.endswith(".manifest.json"))
    body = (tmp_path / report).read_text()
    assert KEYS["order-1003"] in body and KEYS["order-1004"] in body
    assert KEYS["order-1001"] not in body
    assert verify(tmp_path / report).ok
    assert details["sagas"] == 2 and details["scope"]["filters"] == scope
    # the period the store covers, as the CLI's export states it (the PDF said "? to ?")
    completeness = json.loads(body.splitlines()[0])["data"]["completeness"]
    stored = [s["started_ns"] for s in filled.get("/api/v1/sagas")["sagas"]]
    assert completeness["coverage_from_ns"] == min(stored)
    assert completeness["coverage_to_ns"] >= max(stored)
    assert completeness["record_counts"]["sagas"] == len(stored)


def test_sagas_page_offers_the_period_export(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/sagas.py")
    assert not at.exception
    assert "Every saga matching the filters above" in _text(at)


def test_audit_log_page_lists_newest_first_and_says_it_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_collector(tmp_path) as c:
        for actor, action, details in AUDIT_ENTRIES[1:]:  # the collector logged config.loaded
            body = {"actor": actor, "action": action, "details": details}
            assert httpx.post(c.url + "/api/v1/audit", json=body).status_code == 200
        at = _app(monkeypatch, c.url, "views/audit.py")
        assert not at.exception
        assert "The audit log verifies." in _text(at) and "5 entries, intact" in _text(at)
        assert not at.error
        table = at.dataframe[0].value
        assert list(table["#"]) == [5, 4, 3, 2, 1]
        assert list(table["action"]) == [
            "report.exported",
            "finding.acknowledged",
            "report.exported",
            "finding.acknowledged",
            "config.loaded",
        ]
        assert list(table["actor"])[:2] == ["carol", "alice"]
        assert table["details"].iloc[0] == "format: pdf · out: q1.pdf · signed"
        assert _prepare_labels(at) == ["Prepare audit log export"]

        entries = c.get("/api/v1/audit")["entries"]
        blob, details = export_audit_log_zip(entries, now_ns=time.time_ns())
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert sorted(z.namelist()) == [AUDIT_LOG_FILE, AUDIT_LOG_FILE + ".manifest.json"]
        z.extractall(tmp_path / "download")
    assert verify(tmp_path / "download" / AUDIT_LOG_FILE).ok
    assert details["entries"] == 5 and details["data_digest"] == entries[-1]["hash"]


def test_audit_log_page_offline_names_an_altered_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = audit_store(tmp_path / "store.duckdb")
    conn = duckdb.connect(str(store))
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    conn.close()
    monkeypatch.delenv("SAGALENS_COLLECTOR", raising=False)
    monkeypatch.setenv("SAGALENS_DB", str(store))
    at = AppTest.from_file(APP, default_timeout=30)
    at.switch_page("views/audit.py")
    at.run()
    assert not at.exception
    assert not at.success
    text = _text(at)
    assert "The audit log does not verify." in text
    assert "audit log: record 2 (finding.acknowledged by mallory) was altered" in text
    assert list(at.dataframe[0].value["actor"])[-2:] == ["mallory", "root"]


def test_overview_says_when_stored_traces_wait_for_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A collector run without analysis stores traces the analysis has not seen yet.
    with running_collector(tmp_path, "--no-analysis") as c:
        r = httpx.post(c.url + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        assert r.status_code == 200, r.text
        at = _app(monkeypatch, c.url)
        assert not at.exception
        waiting = c.get("/api/v1/overview")["analysis"]["traces_waiting"]
        assert waiting > 1
        assert f"{waiting} stored traces not analysed yet" in _text(at)
        assert not at.warning  # ingest has not outrun the analysis by much yet
    # Offline, on a file whose waiting records span a minute of ingest: a warning.
    db = c.db
    conn = duckdb.connect(str(db))
    conn.execute(
        "UPDATE spans SET ingested_ns = ingested_ns - 60_000_000_000 "
        "WHERE trace_id = (SELECT min(trace_id) FROM spans)"
    )
    conn.close()
    monkeypatch.delenv("SAGALENS_COLLECTOR", raising=False)
    monkeypatch.setenv("SAGALENS_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    (warning,) = at.warning
    assert "Analysis is behind ingest" in warning.value
    assert f"{waiting} stored traces not analysed yet, spanning 1m 00s of ingest" in warning.value
    # While the store is analysed again, what waits is old: the reason is the news, not a lag.
    again = tmp_path / "again.duckdb"
    shutil.copy(db, again)
    conn = duckdb.connect(str(again))
    conn.execute(
        "UPDATE analysis_progress SET reanalysis = 'the saga definitions changed since they "
        "were analysed', reanalysis_until_ns = (SELECT max(ingested_ns) + 1 FROM spans)"
    )
    conn.close()
    monkeypatch.setenv("SAGALENS_DB", str(again))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception and not at.warning
    assert at.info[0].value == (
        "**Analysing the stored sagas again**: the saga definitions changed since they were "
        f"analysed. {waiting} stored traces not analysed yet; until they are, their sagas show "
        "the earlier analysis."
    )


def test_overview_warns_of_a_broker_tap_that_is_not_consuming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # no broker there
    tap = f"nats://127.0.0.1:{port}?subject=orders.>&name=orders"
    with running_collector(tmp_path, "--tap", tap) as c:
        wait_for(lambda: c.get("/api/v1/overview")["taps"][0]["last_error"])
        r = httpx.post(c.url + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        assert r.status_code == 200, r.text
        wait_for(lambda: c.counts()["sagas"])
        at = _app(monkeypatch, c.url)
        assert not at.exception
        (warning,) = at.warning
        assert warning.value.startswith(
            f"**Broker tap orders has not connected yet** (nats, nats://127.0.0.1:{port}): "
            "cannot connect"
        )
        assert "The events it would bring in are missing until it connects" in warning.value


def test_a_report_that_cannot_be_made_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_collector(tmp_path) as c:
        r = httpx.post(c.url + "/v1/traces", json=sample_sagas(time.time_ns()), timeout=10)
        assert r.status_code == 200, r.text
        wait_for(lambda: c.get("/api/v1/sagas")["total"] == len(EXPECTED_STATUS))
        at = _app(monkeypatch, c.url, "views/sagas.py")
        assert not at.exception and not at.error
        c.stop()  # the collector goes away between showing the list and making its report
        prepare = next(b for b in at.button if b.label.startswith("Prepare "))
        at = prepare.click().run()
    assert not at.exception
    (error,) = at.error
    assert "The report could not be made." in error.value
    assert c.url.removeprefix("http://") in error.value  # the reason: which collector failed
    assert not at.get("download_button")  # nothing half-made is offered


def test_a_prepared_report_is_offered_for_download(
    filled: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _app(monkeypatch, filled.url, "views/saga.py", key=KEYS["order-1003"])
    assert not at.get("download_button")
    prepare = next(b for b in at.button if b.label.startswith("Prepare "))
    at = prepare.click().run()
    assert not at.exception and not at.error
    (button,) = at.get("download_button")
    assert button.proto.label == "Export audit report for this saga"
    assert not _prepare_labels(at)  # one button at a time: the file is made


def test_overview_lists_what_the_consuming_taps_brought_in() -> None:
    def page() -> None:
        from dashboard import ui

        ui.tap_notice(
            [
                {
                    "name": "orders",
                    "kind": "rabbitmq",
                    "state": "connected",
                    "messages": 1200,
                    "rejected": 3,
                    "url": "amqp://guest:***@127.0.0.1:5672/",
                    "last_error": "",
                },
                {
                    "name": "billing",
                    "kind": "nats",
                    "state": "connected",
                    "messages": 1,
                    "rejected": 0,
                    "url": "nats://127.0.0.1:4222",
                    "last_error": "",
                },
            ]
        )

    at = AppTest.from_function(page).run()
    assert not at.exception and not at.warning
    assert at.caption[0].value == (
        ":material/hub: Broker taps consuming: orders (rabbitmq): 1,200 messages, 3 rejected; "
        "billing (nats): 1 message."
    )
