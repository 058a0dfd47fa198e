"""Schema migrations applied to a store written by an earlier version."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from collector.client import DbSource, SourceError
from collector.store.queries import Reader
from collector.store.schema import LATEST_VERSION, readable_problem, stored_version
from collector.store.writer import migrate


def test_fresh_store_reaches_the_latest_version(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "s.duckdb"))
    assert migrate(conn) == LATEST_VERSION
    assert migrate(conn) == LATEST_VERSION  # a second open applies nothing
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    versions = [r[0] for r in rows]
    assert versions == list(range(1, LATEST_VERSION + 1))


def test_steps_of_an_older_store_gain_saga_type_and_next_step(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    assert migrate(conn, upto=3) == 3
    conn.execute(
        "INSERT INTO sagas (saga_key, saga_type, status) VALUES "
        "('a', 'OrderSaga', 'compensated'), ('b', 'OrderSaga', 'completed'), "
        "('c', 'RefundSaga', 'completed')"
    )
    conn.execute(
        "INSERT INTO steps (saga_key, seq, name, step_type, outcome, start_ns, end_ns) VALUES "
        "('a', 0, 'reserve', 'action', 'ok', 0, 10), ('a', 1, 'charge', 'action', 'failed', 10, 20),"
        "('a', 2, 'release', 'compensation', 'ok', 20, 30),"
        "('b', 1, 'charge', 'action', 'ok', 10, 40), ('b', 0, 'reserve', 'action', 'ok', 0, 10),"
        "('c', 0, 'refund', 'action', 'ok', 0, 5)"
    )
    assert migrate(conn) == LATEST_VERSION
    rows = conn.execute(
        "SELECT saga_key, seq, saga_type, next_step FROM steps ORDER BY saga_key, seq"
    ).fetchall()
    assert rows == [
        ("a", 0, "OrderSaga", "charge"),
        ("a", 1, "OrderSaga", "release"),
        ("a", 2, "OrderSaga", None),
        ("b", 0, "OrderSaga", "charge"),
        ("b", 1, "OrderSaga", None),
        ("c", 0, "RefundSaga", None),
    ]
    flow = Reader(conn).flow("OrderSaga")
    assert flow["sagas"] == 2 and flow["compensated"] == 1
    edges = {(e["source"], e["target"]): e["count"] for e in flow["edges"]}
    assert edges == {("reserve", "charge"): 2, ("charge", "release"): 1}
    nodes = {n["name"]: (n["count"], n["failed"], n["median_ns"]) for n in flow["nodes"]}
    assert nodes == {"reserve": (2, 0, 10), "charge": (2, 1, 20), "release": (1, 0, 10)}
    # the saga detail keeps serving steps as the analysis produced them
    steps = Reader(conn).get_saga("a")
    assert steps is not None
    assert "next_step" not in steps["steps"][0] and steps["steps"][1]["name"] == "charge"


def test_flow_marks_compensating_events_and_gives_events_no_duration(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "s.duckdb"))
    migrate(conn)
    conn.execute(
        "INSERT INTO steps (saga_key, seq, name, step_type, outcome, start_ns, end_ns, "
        "compensates, saga_type) VALUES "
        "('a', 0, 'process', 'action', 'ok', 0, 40, '', 'Shop'),"
        "('a', 1, 'InventoryReserved', 'event', 'ok', 50, 50, '', 'Shop'),"
        "('a', 2, 'InventoryReleased', 'event', 'ok', 60, 60, 'InventoryReserved', 'Shop'),"
        "('a', 3, 'release', 'compensation', 'running', 70, 0, 'reserve', 'Shop')"
    )
    # a service known only as the source of events is listed as such
    assert Reader(conn).event_sources() == []  # every step above has no service
    conn.execute("UPDATE steps SET service = 'billing' WHERE seq = 0")
    conn.execute("UPDATE steps SET service = '/shop/billing' WHERE seq IN (1, 2)")
    assert Reader(conn).overview()["event_sources"] == ["/shop/billing"]
    nodes = {n["name"]: n for n in Reader(conn).flow("Shop")["nodes"]}
    assert {k: (n["compensation"], n["median_ns"]) for k, n in nodes.items()} == {
        "process": (False, 40),
        "InventoryReserved": (False, None),
        "InventoryReleased": (True, None),
        "release": (True, None),
    }


def test_read_only_store_of_another_version_is_explained(tmp_path: Path) -> None:
    old = tmp_path / "old.duckdb"
    conn = duckdb.connect(str(old))
    migrate(conn, upto=3)
    conn.close()
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE t (x INTEGER)").close()
    current = tmp_path / "current.duckdb"
    migrate(duckdb.connect(str(current)))

    def problem(path: Path) -> str:
        with duckdb.connect(str(path), read_only=True) as ro:
            return readable_problem(stored_version(ro), str(path))

    assert problem(current) == ""
    assert "older sagalens (schema 3" in problem(old) and "sagalens collector --db" in problem(old)
    assert "not a sagalens store" in problem(foreign)
    assert "newer sagalens" in readable_problem(LATEST_VERSION + 1, "x.duckdb")
    with pytest.raises(SourceError, match="older sagalens"):
        DbSource(str(old))
    assert DbSource(str(current)).list_sagas({})["total"] == 0


def test_analysis_tables_keep_their_rows_and_columns_without_keys(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "v5.duckdb"))
    assert migrate(conn, upto=5) == 5
    tables = ("sagas", "steps", "findings", "saga_traces", "saga_events", "saga_identity")
    conn.execute(
        "INSERT INTO sagas (saga_key, status, services) VALUES ('a', 'completed', ['pay']);"
        "INSERT INTO steps (saga_key, seq, name, records) VALUES ('a', 0, 'charge', ['span:1']);"
        "INSERT INTO findings (finding_id, saga_key, details) VALUES ('f1', 'a', '{\"x\": 1}');"
        "INSERT INTO saga_traces VALUES ('t1', 'a');"
        "INSERT INTO saga_events VALUES ('e1', 'a');"
        "INSERT INTO saga_identity VALUES ('saga.id:a', 'a');"
        "INSERT INTO trace_links VALUES ('t1', 't2')"
    )

    def shape() -> dict[str, object]:
        return {
            t: (
                [c[:2] for c in conn.execute(f"DESCRIBE {t}").fetchall()],  # name and type
                conn.execute(f"FROM {t}").fetchall(),
            )
            for t in tables
        }

    before = shape()
    assert migrate(conn) == LATEST_VERSION
    assert shape() == before
    keyed = conn.execute(
        "SELECT DISTINCT table_name FROM duckdb_constraints() "
        "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
    ).fetchall()
    assert not {t for (t,) in keyed} & set(tables)
    assert conn.execute("SELECT count(*) FROM duckdb_indexes()").fetchall() == [(0,)]
    # trace links keep theirs: a link already stored is not stored twice
    conn.execute("INSERT INTO trace_links VALUES ('t1', 't2') ON CONFLICT DO NOTHING")
    assert conn.execute("SELECT count(*) FROM trace_links").fetchall() == [(1,)]
