"""What the collector's analysis runner reads back from the store: learned stats, due sagas."""

from __future__ import annotations

import dataclasses
import gc
import os
import random
from pathlib import Path

import duckdb
import pytest

from collector import rebuild as rebuild_module
from collector.analysis.config import SagaConfig
from collector.analysis.model import Step
from collector.analysis.stats import learn_stats
from collector.normalize.records import (
    EventRecord,
    LogRecord,
    RecordBatch,
    SpanRecord,
    finalize_event_key,
    finalize_log_id,
)
from collector.rebuild import gc_paused, rebuild
from collector.runner import (
    _DUE_TRACES,
    EVENT_PREFIX,
    MAX_PAUSE_S,
    MIN_PASS_RECORDS,
    SAGA_TABLES,
    Working,
    analysis_basis,
    analyze_working,
    begin_reanalysis,
    earliest_stall_ns,
    gather,
    learn_from_store,
    next_backlog,
    next_pass_size,
    pause_after_pass,
    pause_and_carry,
    reanalysis_reason,
    result_tables,
    store_results,
)
from collector.store.queries import analysis_status, load_progress
from collector.store.records_io import load_events, load_logs, load_spans
from collector.store.writer import Writer, migrate
from sample_data.shapes import build_population, combined_config

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


def _analyse_pass(
    writer: Writer, traces: set[str], config: SagaConfig, now_ns: int = 10_000
) -> None:
    cur = writer.cursor()
    try:
        work = gather(cur, traces, set(), config)
    finally:
        cur.close()
    result = analyze_working(work, config, now_ns)
    tables = result_tables(result, now_ns)
    writer.run(lambda conn: store_results(conn, tables, work.old_sagas)).result(10)


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


def _plain_span(trace_id: str, span_id: str) -> SpanRecord:
    return SpanRecord(trace_id=trace_id, span_id=span_id, name="s", start_ns=1, end_ns=2)


def _commit(writer: Writer, batch: RecordBatch) -> int:
    """Store ``batch`` in one commit of its own; return that commit's ingested_ns."""
    writer.submit(batch).result(10)
    return writer.last_commit_ns


def test_the_backlog_is_read_in_commit_order_and_each_record_once(tmp_path: Path) -> None:
    writer = Writer(str(tmp_path / "b.duckdb")).start()
    try:
        # A commit larger than a pass, one with a log and an event, one that repeats a trace.
        big = RecordBatch(spans=[_plain_span(f"{i:032x}", "1" * 16) for i in range(40)])
        first = _commit(writer, big)
        event = finalize_event_key(
            EventRecord(
                id="e-1", source="shop", type="OrderPlaced", transport="http", trace_id="f" * 32
            )
        )
        log_record = LogRecord(record_id="l-1", time_ns=5, trace_id="e" * 32)
        second = _commit(writer, RecordBatch(logs=[log_record], events=[event]))
        third = _commit(writer, RecordBatch(spans=[_plain_span(f"{3:032x}", "2" * 16)]))
        assert first < second < third

        cur = writer.cursor()
        seen: list[tuple[int, str]] = []
        progress = (0, "")
        while batch := next_backlog(cur, progress, limit=7):
            assert len(batch) <= 7
            seen += batch
            progress = batch[-1]
        assert seen == sorted(seen)
        assert seen == [
            *((first, f"{i:032x}") for i in range(40)),
            *sorted(
                [(second, "e" * 32), (second, "f" * 32), (second, EVENT_PREFIX + event.event_key)]
            ),
            (third, f"{3:032x}"),
        ]
        # Nothing past the last mark; one trace has spans past the one before it.
        assert analysis_status(cur, progress) == {"traces_waiting": 0, "behind_s": 0.0}
        # One trace has spans past the mark before the last: they span two commits.
        assert analysis_status(cur, seen[-2]) == {
            "traces_waiting": 1,
            "behind_s": 0.0,  # the waiting span is the latest commit's own
        }
        status = analysis_status(cur, (first, f"{38:032x}"))
        assert status == {"traces_waiting": 2, "behind_s": (third - first) / 1e9}
        cur.close()
    finally:
        writer.close()


def test_a_pass_records_its_progress_with_its_results(tmp_path: Path) -> None:
    config = SagaConfig()
    writer = Writer(str(tmp_path / "p.duckdb")).start()
    try:
        writer.submit(RecordBatch(spans=[_span("a", "1", {"saga.id": "order-1"})])).result(10)
        cur = writer.cursor()
        assert load_progress(cur) == (1, "")  # a fresh store: everything is pending
        (pending,) = next_backlog(cur, (1, ""), limit=10)
        work = gather(cur, {pending[1]}, set(), config)
        result = analyze_working(work, config, 10_000)
        tables = result_tables(result, 10_000)
        writer.run(lambda conn: store_results(conn, tables, work.old_sagas, pending)).result(10)
        assert load_progress(cur) == pending
        assert next_backlog(cur, load_progress(cur), limit=10) == []
        assert cur.execute("SELECT count(*) FROM sagas").fetchone() == (1,)

        # A pass that fails stores neither its sagas nor its progress.
        def failing(conn: duckdb.DuckDBPyConnection) -> None:
            store_results(conn, tables, work.old_sagas, (pending[0] + 1, ""))
            raise RuntimeError("disk full")

        with pytest.raises(RuntimeError):
            writer.run(failing).result(10)
        assert load_progress(cur) == pending
        cur.close()
    finally:
        writer.close()


def test_a_rebuild_leaves_no_backlog(tmp_path: Path) -> None:
    writer = Writer(str(tmp_path / "r.duckdb")).start()
    try:
        writer.submit(RecordBatch(spans=[_span("a", "1", {"saga.id": "order-1"})])).result(10)
        writer.submit(RecordBatch(spans=[_span("b", "2", {"saga.id": "order-2"})])).result(10)
    finally:
        writer.close()
    conn = duckdb.connect(str(tmp_path / "r.duckdb"))
    rebuild(conn, SagaConfig())
    assert next_backlog(conn, load_progress(conn), limit=10) == []
    assert conn.execute("SELECT count(*) FROM sagas").fetchone() == (2,)
    # ... and records what it analysed with: a collector of the same sagalens and definitions
    # analyses nothing again; other definitions send it through the whole store.
    assert begin_reanalysis(conn, analysis_basis(SagaConfig())) == ("", "")
    assert next_backlog(conn, load_progress(conn), limit=10) == []
    other = SagaConfig.from_dict({"stall_after": "5s"})
    reason, records = begin_reanalysis(conn, analysis_basis(other))
    assert (reason, records) == (
        "the saga definitions changed since they were analysed",
        "2 traces",
    )
    assert [r for _, r in next_backlog(conn, load_progress(conn), limit=10)] == ["a" * 32, "b" * 32]
    assert analysis_status(conn)["reanalysis"] == reason
    assert begin_reanalysis(conn, analysis_basis(other)) == ("", "")


def test_a_new_analysis_version_or_other_definitions_is_a_reason_to_analyse_again() -> None:
    basis = analysis_basis(SagaConfig())
    assert analysis_basis(SagaConfig()) == basis
    assert reanalysis_reason(basis, basis) == ""
    assert "definitions changed" in reanalysis_reason(
        basis, analysis_basis(SagaConfig.from_dict({"stall_multiplier": 4}))
    )
    version, _, digest = basis.partition(":")
    assert "analyses sagas differently" in reanalysis_reason(f"{int(version) - 1}:{digest}", basis)
    # A store from before the basis was kept says nothing: it is analysed again.
    assert reanalysis_reason("", basis) != ""


def _mixed_records() -> RecordBatch:
    log = LogRecord(
        time_ns=1_500,
        trace_id="c" * 32,
        span_id="3" * 16,
        event_name="PaymentDeclined",
        attributes={"saga.id": "order-3", "saga.step": "charge"},
    )
    event = EventRecord(
        id="e-1",
        source="orders",
        type="OrderPlaced",
        transport="http",
        time_ns=1_200,
        extensions={"correlationid": "order-4"},
        data={"amount": 12345678901234567890123},
    )
    return RecordBatch(
        spans=[
            _span("a", "1", {"saga.id": "order-1"}),
            _span("b", "2", {"saga.id": "order-2", "saga.step": "charge"}),
        ],
        logs=[finalize_log_id(log)],
        events=[finalize_event_key(event)],
    )


def _saga_rows(conn: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT saga_key, status, step_count, record_count, trace_ids FROM sagas ORDER BY 1"
    ).fetchall()


def test_a_rebuild_finds_what_incremental_passes_find(tmp_path: Path) -> None:
    # Logs of a trace without spans and events outside any trace included: the rebuild
    # reads everything the backlog would hand to incremental passes.
    config = SagaConfig()
    writer = Writer(str(tmp_path / "inc.duckdb")).start()
    try:
        writer.submit(_mixed_records()).result(10)
        cur = writer.cursor()
        pending = next_backlog(cur, load_progress(cur), limit=100)
        traces = {i for _, i in pending if not i.startswith(EVENT_PREFIX)}
        events = {i.removeprefix(EVENT_PREFIX) for _, i in pending if i.startswith(EVENT_PREFIX)}
        work = gather(cur, traces, events, config)
        cur.close()
        tables = result_tables(analyze_working(work, config, 10_000), 10_000)
        writer.run(lambda conn: store_results(conn, tables, work.old_sagas)).result(10)
        incremental = _saga_rows(writer.cursor())
    finally:
        writer.close()
    writer = Writer(str(tmp_path / "full.duckdb")).start()
    try:
        writer.submit(_mixed_records()).result(10)
    finally:
        writer.close()
    conn = duckdb.connect(str(tmp_path / "full.duckdb"))
    stats = rebuild(conn, config, now_ns=10_000)
    assert stats.records == 4
    assert len(incremental) == 4
    assert _saga_rows(conn) == incremental
    conn.close()


def _store_population(path: Path, sagas: int) -> None:
    pop = build_population(sagas, seed=3)
    writer = Writer(str(path)).start()
    try:
        writer.submit(RecordBatch(spans=pop.spans, logs=pop.logs, events=pop.events)).result(60)
    finally:
        writer.close()


def _all_saga_rows(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    rows = {}
    for table in (*SAGA_TABLES, "trace_links"):
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "AND column_name NOT IN ('detected_ns', 'updated_ns')",
                [table],
            ).fetchall()
        ]
        rows[table] = sorted(
            conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall(), key=repr
        )
    return rows


def test_a_rebuild_in_several_processes_stores_what_one_process_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SagaConfig.from_dict(combined_config())
    stored = {}
    for processes in (1, 3):
        path = tmp_path / f"p{processes}.duckdb"
        _store_population(path, 240)
        # Small enough to test quickly, so let every process take a part however small.
        monkeypatch.setattr(rebuild_module, "MIN_SAGAS_PER_PROCESS", 1)
        conn = duckdb.connect(str(path))
        stats = rebuild(conn, config, processes=processes)
        assert (stats.sagas, stats.processes) == (240, processes)
        stored[processes] = _all_saga_rows(conn)
        conn.close()
    one, several = stored[1], stored[3]
    assert len(one["sagas"]) == 240
    assert one["findings"], "the population has troubled sagas: findings to compare"
    assert one["trace_links"], "and choreographed sagas whose traces are linked"
    for table in one:
        assert several[table] == one[table], table


def _identity_edge_cases() -> list[SpanRecord]:
    """Spans that carry identity only one way each, beside spans of their traces that
    carry none: a rebuild reads identity from the spans that carry any, and must miss none.
    """
    plain = {"db.system": "postgresql"}
    link = {"trace_id": "5" * 32, "span_id": "5" * 16, "attributes": {}}
    return [
        # a business key from the definitions file, and an integer saga.id
        _span("1", "1", {"order.id": "o-77", **plain}),
        _span("1", "2", plain),
        _span("2", "1", {"saga.id": 42}),
        # a conversation id alone, and a span that only links to a keyed trace
        _span("3", "1", {"messaging.conversation_id": "c-9"}),
        _span("3", "2", plain),
        dataclasses.replace(_span("4", "1", plain), links=[link]),
        _span("5", "1", {"saga.id": "order-5"}),
        # no identity anywhere in its trace: no saga
        _span("6", "1", plain),
        # a business key under a name that needs quoting, with a boolean value; a float id
        _span("7", "1", {ODD_NAME: True, **plain}),
        _span("8", "1", {"saga.id": 2.5}),
    ]


# An attribute name with every character a JSON path or pointer treats specially.
ODD_NAME = 'tenant/"order".no~1\\x [0] $'


def test_a_rebuild_finds_what_analysing_every_record_at_once_finds(tmp_path: Path) -> None:
    definitions = combined_config()
    definitions["correlation"] = [*definitions["correlation"], {"attribute": ODD_NAME}]
    config = SagaConfig.from_dict(definitions)
    path = tmp_path / "all.duckdb"
    _store_population(path, 120)
    writer = Writer(str(path)).start()
    try:
        writer.submit(RecordBatch(spans=_identity_edge_cases())).result(10)
    finally:
        writer.close()
    conn = duckdb.connect(str(path))
    now = rebuild_module.data_now(conn)
    rebuild(conn, config, processes=1)
    rebuilt = _all_saga_rows(conn)
    work = Working(
        spans=load_spans(conn, None), logs=load_logs(conn, None), events=load_events(conn, None, [])
    )
    for table in (*SAGA_TABLES, "trace_links"):
        conn.execute(f"DELETE FROM {table}")
    store_results(conn, result_tables(analyze_working(work, config, now), now), set())
    assert _all_saga_rows(conn) == rebuilt
    conn.close()
    traces = {t for (t, _) in rebuilt["saga_traces"]}
    assert {"1" * 32, "2" * 32, "3" * 32, "4" * 32, "5" * 32, "7" * 32, "8" * 32} <= traces
    assert "6" * 32 not in traces
    keys = {k for (_, k) in rebuilt["saga_traces"]}
    # rules without a label of their own share the first one's
    assert {"order.id:True", "saga.id:2.5", "saga.id:42"} <= keys


_PARENT = os.getpid()
_analyse_chunk = rebuild_module._analyse_chunk


def _dying_chunk(first: int, end: int) -> dict[str, object]:
    if os.getpid() != _PARENT:
        os._exit(9)  # as a process the kernel killed for memory
    return _analyse_chunk(first, end)


def test_a_rebuild_analyses_here_what_a_killed_process_did_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "killed.duckdb"
    _store_population(path, 60)
    monkeypatch.setattr(rebuild_module, "MIN_SAGAS_PER_PROCESS", 1)
    monkeypatch.setattr(rebuild_module, "_analyse_chunk", _dying_chunk)
    conn = duckdb.connect(str(path))
    stats = rebuild(conn, SagaConfig.from_dict(combined_config()), processes=2)
    assert stats.sagas == 60
    assert conn.execute("SELECT count(DISTINCT saga_key) FROM steps").fetchone() == (60,)
    conn.close()
    assert "a rebuild process stopped" in caplog.text


def test_a_rebuild_that_fails_midway_leaves_what_was_stored_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "midway.duckdb"
    _store_population(path, 60)
    config = SagaConfig.from_dict(combined_config())
    conn = duckdb.connect(str(path))
    rebuild(conn, config, processes=1)
    before = _all_saga_rows(conn)
    progress = load_progress(conn)
    # Six chunks, stored one by one: the third fails after two were inserted.
    monkeypatch.setattr(rebuild_module, "MAX_SAGAS_PER_CHUNK", 10)
    analysed: list[int] = []

    def failing(first: int, end: int) -> dict[str, object]:
        analysed.append(first)
        if len(analysed) == 3:
            raise RuntimeError("analysis failed")
        return _analyse_chunk(first, end)

    monkeypatch.setattr(rebuild_module, "_analyse_chunk", failing)
    with pytest.raises(RuntimeError, match="analysis failed"):
        rebuild(conn, config, processes=1)
    assert len(analysed) == 3
    assert _all_saga_rows(conn) == before
    assert load_progress(conn) == progress
    conn.close()


def test_a_rebuild_forks_only_for_parts_worth_a_process() -> None:
    # Forking costs more than a few sagas take: no part is smaller than the minimum.
    least = rebuild_module.MIN_SAGAS_PER_PROCESS
    assert rebuild_module.processes_for(30, 4) == 1
    assert rebuild_module.processes_for(2 * least - 1, 4) == 1
    assert rebuild_module.processes_for(2 * least, 4) == 2
    assert rebuild_module.processes_for(100 * least, 4) == 4
    assert rebuild_module.processes_for(100 * least, 1) == 1


@pytest.mark.parametrize("sagas", [0, 1, 7, 9_999, 100_000, 1_000_003])
@pytest.mark.parametrize("processes", [1, 2, 3])
def test_rebuild_chunks_cover_every_saga_once_in_key_order(sagas: int, processes: int) -> None:
    chunks = rebuild_module.chunk_bounds(sagas, processes)
    assert [i for first, end in chunks for i in range(first, end)] == list(range(sagas))
    assert all(end - first <= rebuild_module.MAX_SAGAS_PER_CHUNK for first, end in chunks)
    assert all(first < end for first, end in chunks)
    if processes > 1 and sagas >= processes * rebuild_module.CHUNKS_PER_PROCESS:
        # enough chunks that no process waits long for the last one of another
        assert len(chunks) >= processes * rebuild_module.CHUNKS_PER_PROCESS


def test_an_older_store_counts_what_it_holds_as_analysed(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "old.duckdb"))
    assert migrate(conn, upto=4) == 4
    conn.execute("INSERT INTO spans (trace_id, span_id, ingested_ns) VALUES ('a', 'b', 500)")
    migrate(conn)
    assert load_progress(conn) == (501, "")
    assert next_backlog(conn, load_progress(conn), limit=10) == []


@pytest.mark.parametrize(
    ("pass_s", "busy", "share", "pause"),
    [
        (0.2, 0.9, 0.2, 0.8),  # a busy writer: the pass takes a fifth of the time
        (0.2, 0.9, 0.5, 0.2),
        (0.2, 0.3, 0.2, 0.0),  # ingest has room: analysis runs flat out
        (0.2, 0.9, 1.0, 0.0),  # no limit
        (30.0, 1.0, 0.1, MAX_PAUSE_S),  # never more than the cap
    ],
)
def test_analysis_gives_ingest_its_share_only_while_the_writer_is_busy(
    pass_s: float, busy: float, share: float, pause: float
) -> None:
    assert pause_after_pass(pass_s, busy, share) == pytest.approx(pause)


def test_pass_time_a_capped_pause_leaves_unbalanced_counts_towards_the_next() -> None:
    # a 2 s pass at a fifth of the time wants an 8 s pause: 5 s now, 0.75 s of pass carried
    pause, carried = pause_and_carry(2.0, 0.0, 0.9, 0.2)
    assert (pause, carried) == pytest.approx((MAX_PAUSE_S, 0.75))
    pause, carried = pause_and_carry(0.25, carried, 0.9, 0.2)
    assert (pause, carried) == pytest.approx((4.0, 0.0))
    # so over both passes analysis took its fifth: 2.25 s of 11.25 s
    # once ingest leaves the writer room, nothing is owed
    assert pause_and_carry(0.5, 3.0, 0.3, 0.2) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("size", "pass_s", "busy", "share", "expected"),
    [
        (1000, 2.5, 0.9, 0.2, 400),  # a pass of 2.5 s outlasts what a 5 s pause balances
        (400, 0.4, 0.9, 0.2, 1000),  # short passes grow back, up to the limit
        (400, 0.8, 0.9, 0.2, 500),
        (100, 60.0, 0.9, 0.2, MIN_PASS_RECORDS),  # never below the floor
        (200, 2.5, 0.3, 0.2, 1000),  # ingest has room: full passes
        (200, 2.5, 0.9, 1.0, 1000),  # no limit
    ],
)
def test_passes_under_load_last_no_longer_than_their_pause_can_balance(
    size: int, pass_s: float, busy: float, share: float, expected: int
) -> None:
    assert next_pass_size(size, pass_s, busy, share, 1000) == expected
    if busy >= 0.5 and share < 1 and expected > MIN_PASS_RECORDS:
        # the next pass, if time falls with size, gets its whole pause: the share holds
        next_s = pass_s * expected / size
        assert pause_after_pass(next_s, busy, share) < MAX_PAUSE_S or expected == 1000


def test_a_finding_that_persists_keeps_its_first_detection_and_acknowledgement(
    tmp_path: Path,
) -> None:
    config = SagaConfig()
    writer = Writer(str(tmp_path / "f.duckdb")).start()
    saga = {"saga.id": "order-7"}
    try:
        # Stock reserved, then the charge failed: the release never ran.
        failed = dataclasses.replace(
            _span("a", "2", saga), name="charge_payment", start_ns=3_000, end_ns=4_000
        )
        failed.status_code = 2
        writer.submit(RecordBatch(spans=[_span("a", "1", saga), failed])).result(10)
        hour = 3600 * SECOND  # long past any stall threshold: the release is missing
        _analyse_pass(writer, {"a" * 32}, config, now_ns=hour)
        cur = writer.cursor()
        (finding_id, detected) = cur.execute(
            "SELECT finding_id, detected_ns FROM findings WHERE kind = 'missing_compensation'"
        ).fetchone() or (None, None)
        assert detected == hour
        writer.run(
            lambda conn: conn.execute(
                "UPDATE findings SET acknowledged_ns = 11_000, acknowledged_by = 'ops' "
                "WHERE finding_id = ?",
                [finding_id],
            )
        ).result(10)
        # A later record of the same saga: the pass replaces its rows, the finding stays.
        later = dataclasses.replace(
            _span("b", "3", saga), name="notify_customer", start_ns=5_000, end_ns=6_000
        )
        writer.submit(RecordBatch(spans=[later])).result(10)
        _analyse_pass(writer, {"b" * 32}, config, now_ns=2 * hour)
        rows = cur.execute(
            "SELECT finding_id, detected_ns, acknowledged_ns, acknowledged_by FROM findings "
            "WHERE kind = 'missing_compensation'"
        ).fetchall()
        assert rows == [(finding_id, hour, 11_000, "ops")]
        assert cur.execute("SELECT step_count FROM sagas").fetchall() == [(3,)]
        cur.close()
    finally:
        writer.close()


def test_gc_paused_holds_the_collector_and_restores_what_it_found() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failing batch")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_result_tables_name_each_steps_successor_and_each_records_saga() -> None:
    from sample_data.shapes import SCENARIOS, build_population, combined_config

    pop = build_population(24, seed=3, scenario_weights={s: 1.0 for s in SCENARIOS})
    config = SagaConfig.from_dict(combined_config())
    work = Working(spans=pop.spans, logs=pop.logs, events=pop.events)
    result = analyze_working(work, config, pop.now_ns)
    tables = result_tables(result, pop.now_ns)
    name = {(s.saga_key, s.seq): s.name for s in result.steps}
    steps = tables["steps"].to_pylist()
    assert len(steps) == len(result.steps) > 24
    assert any(s["next_step"] is None for s in steps) and any(s["next_step"] for s in steps)
    for s in steps:
        assert s["next_step"] == name.get((s["saga_key"], s["seq"] + 1))
    traces = {
        ref.split(":")[1]: key for ref, key in result.membership.items() if ref[:5] == "span:"
    }
    events = {ref[6:]: key for ref, key in result.membership.items() if ref[:6] == "event:"}
    assert events and traces
    assert dict(zip(*tables["saga_traces"].to_pydict().values(), strict=True)) == traces
    assert dict(zip(*tables["saga_events"].to_pydict().values(), strict=True)) == events


def test_a_rebuild_writes_row_groups_as_they_fill_and_puts_the_setting_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "buffer.duckdb"
    _store_population(path, 30)
    conn = duckdb.connect(str(path))
    setting = "SELECT current_setting('write_buffer_row_group_count')"
    before = conn.execute(setting).fetchone()
    assert before is not None and before[0] > 1
    during: list[object] = []
    insert_rows = rebuild_module._insert_rows

    def watching(c: duckdb.DuckDBPyConnection, tables: dict[str, object]) -> None:
        row = c.execute(setting).fetchone()
        during.append(row[0] if row else None)
        insert_rows(c, tables)  # type: ignore[arg-type]

    monkeypatch.setattr(rebuild_module, "_insert_rows", watching)
    rebuild(conn, SagaConfig.from_dict(combined_config()), processes=1)
    assert during and set(during) == {1}
    assert conn.execute(setting).fetchone() == before
    conn.close()


def test_a_pass_that_fails_on_one_record_analyses_the_rest_and_moves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector import runner as runner_module
    from collector.service import Collector, Settings

    collector = Collector(Settings(db=str(tmp_path / "f.duckdb")))
    collector.writer.start()
    try:
        spans = [_span(t, "1", {"saga.id": f"order-{t}"}) for t in "abc"]
        collector.writer.submit(RecordBatch(spans=spans)).result(10)
        real = runner_module.analyze_working

        def fails_on_b(work: Working, *args: object) -> object:
            # Stands in for a record the analysis cannot take; none is known to exist.
            if "b" * 32 in work.trace_ids:
                raise OverflowError("Python int too large to convert to C long")
            return real(work, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(runner_module, "analyze_working", fails_on_b)
        runner = collector.runner
        assert runner.run_once()
        cur = collector.writer.cursor()
        stored = cur.execute("SELECT saga_key FROM sagas ORDER BY 1").fetchall()
        assert stored == [("saga.id:order-a",), ("saga.id:order-c",)]
        assert runner.failures == 2  # the pass, then trace b alone
        # The mark moved past all three: the next pass does not fail on b again.
        assert next_backlog(cur, load_progress(cur), limit=10) == []
        assert runner.progress == load_progress(cur)
        assert not runner.run_once() and runner.failures == 2
        cur.close()
    finally:
        collector.writer.close()
