"""``sagalens import``: OTLP JSON lines and CloudEvents files, into a DuckDB file or a collector."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import duckdb
import pytest
from click.testing import CliRunner

from collector.cli import main
from collector.importer import Item, read_items
from tests.conftest import running_collector

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


def _span(rng: random.Random, trace: str, name: str, offset_ms: int) -> dict[str, Any]:
    start = T0 + offset_ms * 1_000_000
    return {
        "traceId": trace,
        "spanId": f"{rng.getrandbits(64):016x}",
        "name": name,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + 5_000_000),
        "attributes": [
            {"key": "saga.id", "value": {"stringValue": trace[:8]}},
            {"key": "saga.name", "value": {"stringValue": "OrderSaga"}},
            {"key": "saga.step", "value": {"stringValue": name}},
        ],
    }


def _traces_line(spans: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "orders"}}]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
    )


def _logs_line(trace: str) -> str:
    return json.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {},
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": str(T0),
                                    "body": {"stringValue": "order placed"},
                                    "traceId": trace,
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    )


def _event(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e-{i}",
        "source": "/orders",
        "type": "OrderPlaced",
        "time": "2026-01-01T00:00:01.123456789Z",
        "data": {"orderId": i},
        **extra,
    }


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    rng = random.Random(7)
    traces = [f"{rng.getrandbits(128):032x}" for _ in range(3)]
    mixed = tmp_path / "export.jsonl"
    mixed.write_text(
        "\n".join(
            [
                _traces_line(
                    [_span(rng, t, "reserve_inventory", 0), _span(rng, t, "charge_payment", 10)]
                )
                for t in traces
            ]
            + [
                _logs_line(traces[0]),
                "this is not json",  # line 5
                json.dumps({"hello": "world"}),  # line 6: neither kind
                json.dumps(_event(1)),
                json.dumps({"specversion": "1.0", "id": "x"}),  # line 8: missing source, type
                _traces_line([{"traceId": "zz", "spanId": "00", "name": "bad"}]),  # line 9: bad ids
                "",
            ]
        )
        + "\n"
    )
    array = tmp_path / "events.json"
    array.write_text(json.dumps([_event(2), _event(3), _event(1), {"id": "y"}], indent=2))
    single = tmp_path / "one.json"
    single.write_text(json.dumps(_event(4, traceparent=f"00-{traces[1]}-{'1' * 16}-01"), indent=2))
    return [mixed, array, single]


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ('{"resourceSpans": []}\n{"specversion": "1.0"}\n', ["otlp", "events"]),
        ('[{"id": 1}, {"id": 2}]', ["events"]),
        ('{\n  "specversion": "1.0",\n  "id": "1"\n}\n', ["events"]),
        ("nope\n\n[1]\n", ["error", "events"]),
        ('{"resourceLogs": []}\n42\n', ["otlp", "error"]),
    ],
)
def test_read_items_classifies_each_line(tmp_path: Path, text: str, kinds: list[str]) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(text)
    seen: list[int] = []
    items: list[Item] = list(read_items(path, seen.append))
    assert [i.kind for i in items] == kinds
    assert sum(seen) >= len(text.encode())


def test_import_into_db_stores_reports_and_analyses(tmp_path: Path, files: list[Path]) -> None:
    db = tmp_path / "offline.duckdb"
    runner = CliRunner()
    result = runner.invoke(main, ["import", *map(str, files), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "stored 11, duplicates 1" in result.output  # 6 spans, 1 log, 4 events; e-1 twice
    assert "rejected 5" in result.output
    for expected in (
        "export.jsonl:5: not valid JSON",
        "export.jsonl:6: neither an OTLP",
        "export.jsonl:8: missing required CloudEvents attributes: source, type",
        "export.jsonl:9:",
        "events.json:1: event 3: missing required",
    ):
        assert expected in result.output
    with duckdb.connect(str(db), read_only=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM logs), "
            "(SELECT count(*) FROM events), (SELECT count(*) FROM rejections), "
            "(SELECT count(*) FROM sagas)"
        ).fetchone()
        assert counts is not None
        assert counts[:4] == (6, 1, 4, 5)
        assert counts[4] >= 3  # the full rebuild ran
        time_ns, transport = conn.execute(
            "SELECT time_ns, transport FROM events WHERE id = 'e-1'"
        ).fetchone() or (0, "")
        assert time_ns == T0 + 1_123_456_789 and transport == "file"
    # Importing again stores nothing new.
    again = runner.invoke(main, ["import", *map(str, files), "--db", str(db)])
    assert "stored 0, duplicates 12" in again.output
    # The sagas are listed under a header, newest first, one line each.
    listed = runner.invoke(main, ["sagas", "--db", str(db), "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    header, *lines, footer = listed.output.splitlines()
    assert header.split() == ["SAGA", "STATUS", "TYPE", "STARTED", "FINDINGS", "EXPLANATION"]
    assert len(lines) == 2 and footer == f"2 of {counts[4]} sagas"
    for line in lines:
        # Each value starts where its header does.
        for name in ("STATUS", "STARTED", "EXPLANATION"):
            assert line[header.index(name) - 2 : header.index(name)] == "  "
            assert line[header.index(name)] != " "


def test_import_into_a_locked_db_says_so(tmp_path: Path, files: list[Path]) -> None:
    with running_collector(tmp_path) as c:
        result = CliRunner().invoke(main, ["import", str(files[2]), "--db", str(c.db)])
    assert result.exit_code == 1
    assert "in use by another process" in result.output and "--collector" in result.output


def test_import_via_collector(tmp_path: Path, files: list[Path]) -> None:
    with running_collector(tmp_path) as c:
        result = CliRunner().invoke(main, ["import", *map(str, files), "--collector", c.url])
        assert result.exit_code == 0, result.output
        assert "stored 4, duplicates 1" in result.output
        assert "sent over OTLP (stored or already present) 7" in result.output
        assert (
            "export.jsonl:8: missing required CloudEvents attributes: source, type" in result.output
        )
        assert "events.json:1: event 3: missing required" in result.output
        counts = c.counts()
        assert (counts["spans"], counts["logs"], counts["events"]) == (6, 1, 4)


def test_a_value_no_column_holds_costs_its_own_line(tmp_path: Path) -> None:
    # Decoding accepts a start time beyond 64 bits from JSON; only the store cannot hold it.
    rng = random.Random(3)
    trace = f"{rng.getrandbits(128):032x}"
    too_late = _span(rng, trace, "charge_payment", 0) | {"startTimeUnixNano": str(2**70)}
    path = tmp_path / "export.jsonl"
    path.write_text(
        "\n".join(
            [
                _traces_line([_span(rng, trace, "reserve_inventory", 0)]),
                _traces_line([too_late, _span(rng, trace, "ship_order", 20)]),
                _traces_line([_span(rng, trace, "complete", 30)]),
            ]
        )
    )
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["import", str(path), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "stored 3, duplicates 0, rejected 1" in result.output
    assert f"export.jsonl:2: span rejected: start_ns {2**70} is out of range" in result.output
    with duckdb.connect(str(db), read_only=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM spans").fetchall()}
        sources = conn.execute("SELECT source FROM rejections").fetchall()
    assert names == {"reserve_inventory", "ship_order", "complete"}
    assert sources == [("import:export.jsonl:2",)]


def test_an_import_with_every_line_rejected_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not json\nnor this\n")
    result = CliRunner().invoke(main, ["import", str(path), "--db", str(tmp_path / "s.duckdb")])
    assert result.exit_code == 1
    assert "notes.txt:2: not valid JSON" in result.output
    assert "nothing was imported: every line was rejected" in result.output
