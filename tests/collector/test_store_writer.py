"""The writer's group commit: many requests in one transaction, each told what it stored."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from collector.normalize.records import (
    EventRecord,
    LogRecord,
    RecordBatch,
    Rejection,
    SpanRecord,
    finalize_event_key,
    finalize_log_id,
)
from collector.store.columns import EVENT_COLUMNS, LOG_COLUMNS, SPAN_COLUMNS, prepare_batch
from collector.store.writer import Writer, WriteResult


def spans(trace: int, count: int, first: int = 1) -> list[SpanRecord]:
    return [
        SpanRecord(
            trace_id=f"{trace:032x}",
            span_id=f"{i:016x}",
            name=f"step-{i}",
            start_ns=1_000 + i,
            end_ns=2_000 + i,
            attributes={"saga.id": f"order-{trace}", "n": i},
        )
        for i in range(first, first + count)
    ]


def event(number: int) -> EventRecord:
    return finalize_event_key(
        EventRecord(id=f"e-{number}", source="/shop", type="OrderPlaced", transport="http")
    )


def log(number: int) -> LogRecord:
    return finalize_log_id(LogRecord(time_ns=5_000 + number, body=f"line {number}"))


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(str(tmp_path / "w.duckdb")).start()
    yield w
    w.close()


def commit_together(writer: Writer, batches: list[RecordBatch]) -> list[WriteResult]:
    """Submit all batches while the writer thread is held, so they form one commit group."""
    release, holding = threading.Event(), threading.Event()

    def hold(conn: object) -> bool:
        holding.set()
        return release.wait(10)

    held = writer.run(hold)
    # Only once the writer thread is inside the job do later submissions queue behind it.
    assert holding.wait(10)
    futures = [writer.submit(b) for b in batches]
    commits = writer.stats.commits
    release.set()
    held.result(10)
    results = [f.result(10) for f in futures]
    assert writer.stats.commits == commits + 1, "the batches were not committed as one group"
    return results


def count(writer: Writer, sql: str) -> int:
    row = writer.cursor().execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_distinct_requests_in_one_group_are_each_stored(writer: Writer) -> None:
    batches = [
        RecordBatch(spans=spans(1, 5)),
        RecordBatch(spans=spans(2, 3), logs=[log(1), log(2)]),
        RecordBatch(events=[event(1), event(2), event(3)], logs=[log(3)]),
    ]
    results = commit_together(writer, batches)
    assert [(r.stored, r.duplicates) for r in results] == [(5, 0), (5, 0), (4, 0)]
    assert count(writer, "SELECT count(*) FROM spans") == 8
    assert count(writer, "SELECT count(*) FROM logs") == 3
    assert count(writer, "SELECT count(*) FROM events") == 3
    assert count(writer, "SELECT count(DISTINCT ingested_ns) FROM spans") == 1


def test_a_retry_racing_its_original_in_one_group_stores_one_copy(writer: Writer) -> None:
    original = RecordBatch(spans=spans(7, 4), events=[event(1)])
    retry = RecordBatch(spans=spans(7, 6), events=[event(1), event(2)])  # 4 old + 2 new spans
    results = commit_together(writer, [original, retry])
    assert [(r.stored, r.duplicates) for r in results] == [(5, 0), (3, 5)]
    assert count(writer, "SELECT count(*) FROM spans") == 6
    assert count(writer, "SELECT count(*) FROM events") == 2


def test_rows_stored_by_an_earlier_commit_are_counted_for_the_right_request(
    writer: Writer,
) -> None:
    earlier = writer.write_blocking(RecordBatch(spans=spans(3, 2), logs=[log(1)]))
    assert (earlier.stored, earlier.duplicates) == (3, 0)
    results = commit_together(
        writer,
        [
            RecordBatch(spans=spans(4, 3)),
            RecordBatch(spans=spans(3, 5), logs=[log(1), log(2)]),  # 2 spans, 1 log seen
            RecordBatch(events=[event(9)]),
        ],
    )
    assert [(r.stored, r.duplicates) for r in results] == [(3, 0), (4, 3), (1, 0)]
    assert count(writer, "SELECT count(*) FROM spans") == 8
    assert count(writer, "SELECT count(*) FROM logs") == 2
    stats = writer.stats
    assert (stats.stored, stats.duplicates) == (11, 3)


def test_rejections_of_every_request_in_a_group_are_kept(writer: Writer) -> None:
    results = commit_together(
        writer,
        [
            RecordBatch(spans=spans(5, 1), rejections=[Rejection("otlp-http", "bad id", "x")]),
            RecordBatch(rejections=[Rejection("amqp:orders", "not JSON", "y")]),
        ],
    )
    assert [(r.stored, r.rejected) for r in results] == [(1, 1), (0, 1)]
    rows = writer.cursor().execute("SELECT source, reason FROM rejections ORDER BY 1").fetchall()
    assert rows == [("amqp:orders", "not JSON"), ("otlp-http", "bad id")]


def test_a_group_stored_again_for_a_retry_keeps_its_rejections_once(writer: Writer) -> None:
    writer.write_blocking(RecordBatch(spans=spans(6, 2)))
    results = commit_together(
        writer,
        [
            RecordBatch(spans=spans(6, 3), rejections=[Rejection("otlp-http", "bad id", "x")]),
            RecordBatch(events=[event(4)], rejections=[Rejection("http", "no type", "y")]),
        ],
    )
    assert [(r.stored, r.duplicates, r.rejected) for r in results] == [(1, 2, 1), (1, 0, 1)]
    rows = writer.cursor().execute("SELECT source, reason FROM rejections ORDER BY 1").fetchall()
    assert rows == [("http", "no type"), ("otlp-http", "bad id")]
    assert count(writer, "SELECT count(*) FROM spans") == 3
    assert count(writer, "SELECT count(*) FROM events") == 1


@pytest.mark.parametrize("threshold", ["64KB", "1GB"])
def test_commits_are_timed_and_checkpoints_counted(tmp_path: Path, threshold: str) -> None:
    w = Writer(str(tmp_path / "c.duckdb"), checkpoint_threshold=threshold).start()
    try:
        for trace in range(1, 9):
            w.submit(RecordBatch(spans=spans(trace, 200))).result(30)
        w.run(lambda conn: conn.execute("SELECT 1").fetchall()).result(30)
        stats = w.stats
        assert stats.commits == 8
        assert sum(stats.commit_buckets) == 8
        assert stats.commit_seconds_total > 0
        if threshold == "1GB":
            # the log only grows: no commit checkpointed
            assert stats.checkpoints == 0
        else:
            # 200 spans leave more than 64 KB of log: most commits checkpoint
            assert stats.checkpoints >= 4
            assert 0 < stats.checkpoint_seconds_total <= stats.commit_seconds_total
    finally:
        w.close()


def test_a_log_body_is_stored_as_the_value_it_is_even_when_empty(writer: Writer) -> None:
    bodies = ["", 0, False, None, [], {}, "ok", {"amount": 0}]
    logs = [
        finalize_log_id(LogRecord(time_ns=1_000 + i, body=body)) for i, body in enumerate(bodies)
    ]
    assert writer.write_blocking(RecordBatch(logs=logs)).stored == len(bodies)
    stored = writer.run(
        lambda conn: conn.execute("SELECT body FROM logs ORDER BY time_ns").fetchall()
    ).result(10)
    assert [json.loads(body) for (body,) in stored] == bodies


def test_json_columns_arrive_typed_as_json_and_read_back_as_json(writer: Writer) -> None:
    # Typed as JSON on the way in, DuckDB keeps the encoder's text as it is (no second
    # parse to check it); JSON functions must still read every value.
    batch = RecordBatch(spans=spans(7, 2), logs=[log(1)], events=[event(1)])
    prepared = prepare_batch(batch)
    for table, columns in (
        (prepared.spans, SPAN_COLUMNS),
        (prepared.logs, LOG_COLUMNS),
        (prepared.events, EVENT_COLUMNS),
    ):
        assert table is not None
        json_columns = [name for name, _, is_json in columns if is_json]
        assert json_columns
        assert {table.schema.field(name).type for name in json_columns} == {pa.json_()}
    assert writer.write_blocking(prepared).stored == 4
    rows = writer.run(
        lambda conn: conn.execute(
            "SELECT typeof(attributes), attributes->>'$.\"saga.id\"', "
            "json_array_length(events) FROM spans ORDER BY span_id"
        ).fetchall()
    ).result(10)
    assert rows == [("JSON", "order-7", 0), ("JSON", "order-7", 0)]


def test_ingest_beyond_the_memory_limit_keeps_the_cache_within_it_and_every_row(
    tmp_path: Path,
) -> None:
    """The buffer pool writes blocks out rather than grow past ``memory_limit``."""
    path = str(tmp_path / "m.duckdb")
    w = Writer(path, memory_limit="16MB").start()
    payload = "x" * 2_000  # 200 traces x 100 spans x 2 KB: about 40 MB, more than the limit
    try:
        for trace in range(200):
            batch = spans(trace, 100)
            for span in batch:
                span.attributes["payload"] = f"{span.trace_id}{span.span_id}{payload}"
            w.write_blocking(RecordBatch(spans=batch))
        cursor = w.cursor()
        used = cursor.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        limit = cursor.execute("SELECT current_setting('memory_limit')").fetchone()
    finally:
        w.close()
    assert limit is not None and limit[0].replace(" ", "") in ("16.0MiB", "15.2MiB")
    assert used is not None and 0 < used[0] <= 16 * 1024 * 1024
    reader = Writer(path)
    try:
        stored = reader.conn.execute(
            "SELECT count(*), count(DISTINCT (trace_id, span_id)), "
            "sum(length(attributes->>'payload')) FROM spans"
        ).fetchone()
    finally:
        reader.conn.close()
    assert stored == (20_000, 20_000, 20_000 * 2_048)
