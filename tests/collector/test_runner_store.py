"""What the collector's analysis runner reads back from the store: learned stats, due sagas."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from collector.analysis.config import SagaConfig
from collector.analysis.model import Step
from collector.analysis.stats import learn_stats
from collector.normalize.records import RecordBatch, SpanRecord
from collector.runner import (
    _DUE_TRACES,
    analyze_working,
    earliest_stall_ns,
    gather,
    learn_from_store,
    materialize,
)
from collector.store.writer import Writer, migrate

SECOND = 1_000_000_000


def random_steps(rng: random.Random, sagas: int) -> tuple[list[Step], dict[str, str]]:
    names = ["reserve", "charge", "ship", "notify", "release", "refund"]
    steps: list[Step] = []
    types: dict[str, str] = {}
    for i in range(sagas):
        key = f"saga-{i}"
        types[key] = rng.choice(["Order", "Booking", ""])
        t = rng.randrange(1, 10**6) * SECOND
        count = rng.randint(0, 6)
        for seq in range(count):
            t += rng.randrange(0, 30) * SECOND // 10
            steps.append(
                Step(
                    saga_key=key,
                    seq=seq,
                    name=rng.choice(names[:4]) if seq < count - 1 else rng.choice(names),
                    step_type=rng.choice(["action", "action", "action", "compensation", "event"]),
                    service="svc",
                    start_ns=t - SECOND,
                    end_ns=rng.choice([t, t, t, t, 0]),
                    outcome=rng.choice(["ok", "ok", "ok", "ok", "failed", "running"]),
                )
            )
    return steps, types


def store_with(path: Path, steps: list[Step], types: dict[str, str]) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    migrate(conn)
    conn.executemany(
        "INSERT INTO sagas (saga_key, saga_type, status, last_progress_ns) VALUES (?, ?, ?, ?)",
        [
            [key, saga_type or None, "running", i]
            for i, (key, saga_type) in enumerate(types.items())
        ],
    )
    conn.executemany(
        "INSERT INTO steps (saga_key, seq, name, step_type, service, start_ns, end_ns, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [s.saga_key, s.seq, s.name, s.step_type, s.service, s.start_ns, s.end_ns, s.outcome]
            for s in steps
        ],
    )
    return conn


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stats_learned_in_the_store_equal_those_learned_in_python(
    tmp_path: Path, seed: int
) -> None:
    steps, types = random_steps(random.Random(seed), 400)
    conn = store_with(tmp_path / "s.duckdb", steps, types)
    expected = learn_stats(steps, types, min_terminal_samples=5)
    got = learn_from_store(conn, min_terminal_samples=5)
    assert got.transitions == expected.transitions
    assert got.terminal_steps == expected.terminal_steps
    assert sum(len(t) for t in got.transitions.values()) > 10
    assert got.terminal_steps, "the data should have some terminal steps to compare"


def test_only_the_most_recent_sagas_teach(tmp_path: Path) -> None:
    steps, types = random_steps(random.Random(9), 200)
    conn = store_with(tmp_path / "s.duckdb", steps, types)
    recent = set(list(types)[-50:])  # last_progress_ns grows with the insertion order
    expected = learn_stats([s for s in steps if s.saga_key in recent], types)
    assert learn_from_store(conn, recent_sagas=50).transitions == expected.transitions


def test_the_sweep_takes_idle_running_sagas_and_stale_stall_texts_only(tmp_path: Path) -> None:
    now = 10_000 * SECOND
    conn = duckdb.connect(str(tmp_path / "d.duckdb"))
    migrate(conn)
    rows = [
        # key, status, last progress, last written
        ("busy", "running", now - SECOND // 2, now - SECOND // 2),
        ("idle", "running", now - 5 * SECOND, now - 5 * SECOND),
        ("fresh-stall", "stalled", now - 3600 * SECOND, now - 60 * SECOND),
        ("stale-stall", "stalled", now - 3600 * SECOND, now - 400 * SECOND),
        ("done", "completed", now - 3600 * SECOND, now - 3600 * SECOND),
    ]
    conn.executemany(
        "INSERT INTO sagas (saga_key, status, last_progress_ns, updated_ns) VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO saga_traces VALUES (?, ?)", [[f"trace-{r[0]}", r[0]] for r in rows]
    )
    earliest = earliest_stall_ns(SagaConfig.from_dict({}))
    assert earliest == SECOND  # learned thresholds never go below a second
    due = {
        r[0]
        for r in conn.execute(_DUE_TRACES, {"idle_since": now - earliest, "now": now}).fetchall()
    }
    assert due == {"trace-idle", "trace-stale-stall"}


def test_a_declared_timeout_shorter_than_a_second_makes_sagas_due_sooner() -> None:
    config = SagaConfig.from_dict(
        {"sagas": {"Order": {"steps": [{"name": "charge", "timeout": "200ms"}]}}}
    )
    assert earliest_stall_ns(config) == 200_000_000


def _analyse_pass(writer: Writer, traces: set[str], config: SagaConfig) -> None:
    cur = writer.cursor()
    try:
        work = gather(cur, traces, set(), config)
    finally:
        cur.close()
    result = analyze_working(work, config, 10_000)
    writer.run(lambda conn: materialize(conn, work, result, 10_000)).result(10)


def _span(trace: str, span: str, attributes: dict[str, object]) -> SpanRecord:
    return SpanRecord(
        trace_id=trace * 32,
        span_id=span * 16,
        name="reserve_inventory",
        start_ns=1_000,
        end_ns=2_000,
        attributes=attributes,
        messaging_conversation_id=str(attributes.get("messaging.conversation_id", "")),
    )


def test_a_saga_whose_key_changes_leaves_no_rows_under_its_old_key(tmp_path: Path) -> None:
    # First only a conversation id names the saga; a later record joins it to a saga.id,
    # which wins as the key. The rows stored under the first key must all go.
    config = SagaConfig()
    writer = Writer(str(tmp_path / "k.duckdb")).start()
    try:
        first = RecordBatch(spans=[_span("a", "1", {"messaging.conversation_id": "c-1"})])
        writer.submit(first).result(10)
        _analyse_pass(writer, {"a" * 32}, config)
        cur = writer.cursor()
        (first_key,) = cur.execute("SELECT saga_key FROM sagas").fetchone() or ("",)
        assert first_key and "c-1" in first_key

        joined = {"messaging.conversation_id": "c-1", "saga.id": "order-7"}
        writer.submit(RecordBatch(spans=[_span("b", "2", joined)])).result(10)
        _analyse_pass(writer, {"b" * 32}, config)

        sagas = cur.execute("SELECT saga_key FROM sagas").fetchall()
        assert len(sagas) == 1 and sagas[0][0] != first_key and "order-7" in sagas[0][0]
        for table in ("steps", "findings", "saga_traces", "saga_events", "saga_identity"):
            rows = cur.execute(
                f"SELECT count(*) FROM {table} WHERE saga_key = ?", [first_key]
            ).fetchone()
            assert rows == (0,), f"{table} keeps rows of the old saga key"
        assert sorted(cur.execute("SELECT trace_id, saga_key FROM saga_traces").fetchall()) == [
            ("a" * 32, sagas[0][0]),
            ("b" * 32, sagas[0][0]),
        ]
        cur.close()
    finally:
        writer.close()
