"""The single writer: one thread owns the read-write DuckDB connection.

Every write goes through it. Requests wait on a future that resolves only after their
rows are committed, so an acknowledgement always means durable. The queue is bounded in
rows; when it is full, ``submit`` raises :class:`OverloadedError` and the receiver answers
503/UNAVAILABLE with a retry hint instead of buffering without limit.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.normalize.records import RecordBatch
from collector.store.columns import (
    EVENT_COLUMNS,
    LOG_COLUMNS,
    SPAN_COLUMNS,
    PreparedBatch,
    prepare_batch,
)
from collector.store.schema import MIGRATIONS, stored_version, writable_problem

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreError(Exception):
    """Base class for storage errors."""


class OverloadedError(StoreError):
    """The write queue is full; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float = 1.0) -> None:
        super().__init__(f"write queue full; retry after {retry_after:g}s")
        self.retry_after = retry_after


class StoreOpenError(StoreError):
    """The store file cannot be opened for writing (locked, corrupt, foreign, a directory)."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked  # another process holds the file


class ClosedError(StoreError):
    """The writer is shutting down and accepts no more work."""


@dataclass(slots=True)
class WriteResult:
    stored: int = 0  # new rows
    duplicates: int = 0  # rows already present (retried exports, redelivered messages)
    rejected: int = 0  # items that could not be stored (recorded in `rejections`)


@dataclass(slots=True)
class CommitInfo:
    """One commit that stored rows; it wakes the analysis, which reads them from the store."""

    rows: int = 0


# Upper bounds (seconds) of the commit latency histogram.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class WriterStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    overloaded: int = 0
    commits: int = 0
    commit_seconds_total: float = 0.0
    last_commit_seconds: float = 0.0
    # commits of records by duration: counts per COMMIT_BUCKETS bound, the last for longer
    commit_buckets: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1))
    # transactions (records or analysis results) in which DuckDB checkpointed, and their time
    checkpoints: int = 0
    checkpoint_seconds_total: float = 0.0

    def count_commit(self, seconds: float) -> None:
        self.commits += 1
        self.commit_seconds_total += seconds
        self.last_commit_seconds = seconds
        self.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1


def migrate(conn: duckdb.DuckDBPyConnection, upto: int | None = None) -> int:
    """Apply pending migrations (up to version ``upto``, default all); return the version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, description VARCHAR, applied_ns BIGINT)"
    )
    current = stored_version(conn)
    for version, description, sql in MIGRATIONS:
        if version <= current or (upto is not None and version > upto):
            continue
        conn.execute("BEGIN")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                [version, description, time.time_ns()],
            )
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current


def open_store(
    path: str, memory_limit: str, checkpoint_threshold: str
) -> duckdb.DuckDBPyConnection:
    """Open ``path`` read-write, or raise StoreOpenError saying why it cannot be the store."""
    if not path or path == ":memory:":
        # DuckDB would run in memory and lose everything at shutdown
        raise StoreOpenError("the store must be a file: give --db a path")
    if os.path.isdir(path):
        raise StoreOpenError(f"could not open the store {path}: it is a directory")
    try:
        conn = duckdb.connect(
            path,
            config={"memory_limit": memory_limit, "checkpoint_threshold": checkpoint_threshold},
        )
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            raise StoreOpenError(
                f"{path} is in use by another process (a running collector?): {exc}", locked=True
            ) from None
        raise StoreOpenError(f"could not open the store {path}: {exc}") from None
    problem = writable_problem(conn, path)
    if problem:
        conn.close()
        raise StoreOpenError(problem)
    return conn


def last_ingested_ns(conn: duckdb.DuckDBPyConnection) -> int:
    """The latest commit's ingested_ns (0 for an empty store)."""
    row = conn.execute(
        "SELECT greatest((SELECT max(ingested_ns) FROM spans), (SELECT max(ingested_ns) FROM logs),"
        " (SELECT max(ingested_ns) FROM events))"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass(frozen=True, slots=True)
class _Kind:
    """One record table: its PreparedBatch field (same name) and the statements it takes."""

    table: str
    key: tuple[str, ...]  # the table's primary key
    view: str  # the name an Arrow batch is registered under
    sql: str  # INSERT from the view, ON CONFLICT DO NOTHING
    new_sql: str  # plain INSERT from the local _new_<table>, with {now}; fails on a stored key
    new_rows_sql: str  # the keys one commit stored (each commit has its own ingested_ns)


def _kind(table: str, columns: list[tuple[str, Any, bool]], key: tuple[str, ...]) -> _Kind:
    view = f"_batch_{table}"
    names = ", ".join(c[0] for c in columns)
    insert = f"INSERT INTO {table} ({names}, ingested_ns) SELECT {names}, "
    return _Kind(
        table,
        key,
        view,
        insert + f"? FROM {view} ON CONFLICT DO NOTHING",
        insert + "{now} FROM _new_" + table,
        f"SELECT {', '.join(key)} FROM {table} WHERE ingested_ns = ?",
    )


_TABLES = (
    _kind("spans", SPAN_COLUMNS, ("trace_id", "span_id")),
    _kind("logs", LOG_COLUMNS, ("record_id",)),
    _kind("events", EVENT_COLUMNS, ("event_key",)),
)


def _keys(table: pa.Table, key: tuple[str, ...]) -> pa.ChunkedArray:
    if len(key) == 1:
        return table.column(key[0])
    return pc.binary_join_element_wise(*(table.column(k) for k in key), "/")


def _insert(conn: duckdb.DuckDBPyConnection, kind: _Kind, table: pa.Table, now: int) -> int:
    conn.register(kind.view, table)
    try:
        row = conn.execute(kind.sql, [now]).fetchone()
    finally:
        # After a failed INSERT the transaction is aborted and refuses even this; the
        # caller's ROLLBACK drops the view with the rest.
        with contextlib.suppress(duckdb.TransactionException):
            conn.unregister(kind.view)
    return int(row[0]) if row else 0


def _concat(tables: list[pa.Table | None]) -> pa.Table | None:
    present = [t for t in tables if t is not None and t.num_rows]
    if len(present) < 2:
        return present[0] if present else None
    return pa.concat_tables(present)


# Reads the table that _rejection_table built from the caller's local ``_new_rejections``.
_REJECTIONS_SQL = "INSERT INTO rejections SELECT {now}, source, reason, sample FROM _new_rejections"


def _rejection_table(batches: list[PreparedBatch]) -> pa.Table | None:
    """The rejections of a commit group as one table, or None when there are none."""
    rejections = [r for b in batches for r in b.rejections]
    if not rejections:
        return None
    source, reason, sample = map(list, zip(*rejections, strict=True))
    return pa.table({"source": source, "reason": reason, "sample": sample})


def _store_new(conn: duckdb.DuckDBPyConnection, batches: list[PreparedBatch], now: int) -> None:
    """Store a commit group in one call into DuckDB, assuming every record in it is new.

    Each call into DuckDB has to take the GIL back when it returns, and while receivers
    decode, that wait lasts up to the interpreter's switch interval: a BEGIN, register,
    INSERT, unregister, COMMIT sequence paid it five times a commit. So the whole group is
    one statement list, which reads the Arrow tables from this function's locals by name
    (DuckDB's replacement scan of Python objects).

    The INSERTs are plain: checking each row against the primary key with ``ON CONFLICT
    DO NOTHING`` costs about as much as the rest of the insert. A record already stored
    (a retried export) makes one fail with ``duckdb.ConstraintException`` instead, and the
    caller rolls back and stores the group again with :meth:`Writer._store`.
    """
    # The SQL below reads these four by name.
    _new_spans = _concat([b.spans for b in batches])
    _new_logs = _concat([b.logs for b in batches])
    _new_events = _concat([b.events for b in batches])
    _new_rejections = _rejection_table(batches)
    present = (_new_spans, _new_logs, _new_events)
    statements = ["BEGIN"]
    statements += [
        k.new_sql.format(now=now) for k, t in zip(_TABLES, present, strict=True) if t is not None
    ]
    if _new_rejections is not None:
        statements.append(_REJECTIONS_SQL.format(now=now))
    statements.append("COMMIT")
    conn.execute(";\n".join(statements))


def _insert_group(
    conn: duckdb.DuckDBPyConnection, kind: _Kind, tables: list[pa.Table | None], now: int
) -> list[int]:
    """Insert one table's rows of a commit group, some of which may be stored already.

    Returns how many each batch stored. One INSERT for the whole group costs a fraction of
    one per request (DuckDB's per-statement work dominates at a few hundred rows). When two
    batches of the group carry the same record (a retry racing its original), each is
    inserted on its own, in order, so the later one counts as the duplicate.
    """
    stored = [0] * len(tables)
    present = [(i, t) for i, t in enumerate(tables) if t is not None and t.num_rows]
    if not present:
        return stored
    if len(present) == 1:
        index, table = present[0]
        stored[index] = _insert(conn, kind, table, now)
        return stored
    combined = pa.concat_tables([t for _, t in present])
    keys = _keys(combined, kind.key)
    if pc.count_distinct(keys).as_py() != combined.num_rows:
        for index, table in present:
            stored[index] = _insert(conn, kind, table, now)
        return stored
    inserted = _insert(conn, kind, combined, now)
    if inserted == combined.num_rows:
        for index, table in present:
            stored[index] = table.num_rows
        return stored
    # Some rows were stored before (retried exports): attribute the new ones to their batch.
    new = set(conn.execute(kind.new_rows_sql, [now]).fetchall())
    for index, table in present:
        rows = zip(*(table.column(k).to_pylist() for k in kind.key), strict=True)
        stored[index] = sum(1 for row in rows if row in new)
    return stored


@dataclass(slots=True)
class _Job:
    batch: PreparedBatch | None
    fn: Callable[[duckdb.DuckDBPyConnection], Any] | None
    future: concurrent.futures.Future[Any]


_STOP = object()

# DuckDB's buffer pool: beyond this it writes blocks out to the file or a temporary file
# rather than hold them. Ingest keeps about this much cached, so it makes most of the
# collector's growth under load. 64 MB took 50-70 MB off the peak RSS under the ingest
# benchmark's overload, at the same throughput, but left queries too little: exporting
# the report of a 100,000-saga store failed with "Out of Memory" (it runs at 128 MB).
MEMORY_LIMIT = "128MB"


class Writer:
    """Owns the read-write connection; batches requests into group commits."""

    def __init__(
        self,
        path: str,
        *,
        max_pending_rows: int = 20_000,
        max_group_rows: int = 20_000,
        on_commit: Callable[[CommitInfo], None] | None = None,
        memory_limit: str = MEMORY_LIMIT,
        checkpoint_threshold: str = "128MB",
    ) -> None:
        self.path = path
        self.max_pending_rows = max_pending_rows
        self.max_group_rows = max_group_rows
        self.on_commit = on_commit
        self.stats = WriterStats()
        self._wal_path = path + ".wal"
        self._wal_bytes = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending_rows = 0
        self._last_commit_ns = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        # DuckDB's default cache grows to most of the machine's memory; the collector shares the
        # host with the services it watches, so keep it small (see MEMORY_LIMIT).
        # DuckDB checkpoints once a commit leaves more than checkpoint_threshold of changes,
        # inside that commit. At the default 16 MB that came every 30k spans, and each
        # rewrote the partly filled row groups again: it halved the writer's throughput.
        # Large inserts go straight to the database file, so a 128 MB threshold still
        # leaves a small write-ahead log to replay after a crash (0.1 s for 250k spans).
        self.conn = open_store(path, memory_limit, checkpoint_threshold)
        self.schema_version = migrate(self.conn)
        # Each commit stamps its rows later than any before, even if the clock went back
        # while the collector was down: the analysis reads its backlog in that order.
        self._last_commit_ns = last_ingested_ns(self.conn)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="sagalens-writer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, commit everything already accepted, close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        self.conn.execute("CHECKPOINT")
        self.conn.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A separate connection for readers in this process (MVCC snapshot reads)."""
        return self.conn.cursor()

    @property
    def last_commit_ns(self) -> int:
        return self._last_commit_ns

    @property
    def pending_rows(self) -> int:
        return self._pending_rows

    # -- submitting --------------------------------------------------------------------
    def submit_prepared(self, batch: PreparedBatch) -> concurrent.futures.Future[WriteResult]:
        rows = batch.rows + len(batch.rejections)
        with self._lock:
            if self._closed:
                raise ClosedError("collector is shutting down")
            # An oversized single batch is still admitted into an empty queue, so no
            # request can be refused forever.
            if self._pending_rows and self._pending_rows + rows > self.max_pending_rows:
                self.stats.overloaded += 1
                raise OverloadedError(1.0)
            self._pending_rows += rows
        future: concurrent.futures.Future[WriteResult] = concurrent.futures.Future()
        self._queue.put(_Job(batch, None, future))
        return future

    def submit(self, batch: RecordBatch) -> concurrent.futures.Future[WriteResult]:
        return self.submit_prepared(prepare_batch(batch))

    def is_full(self) -> bool:
        return self._pending_rows >= self.max_pending_rows

    async def write(self, batch: RecordBatch | PreparedBatch) -> WriteResult:
        """Queue a batch and wait until it is committed."""
        prepared = batch if isinstance(batch, PreparedBatch) else prepare_batch(batch)
        return await asyncio.wrap_future(self.submit_prepared(prepared))

    def write_blocking(self, batch: RecordBatch | PreparedBatch) -> WriteResult:
        prepared = batch if isinstance(batch, PreparedBatch) else prepare_batch(batch)
        return self.submit_prepared(prepared).result()

    def run(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(conn)`` on the writer thread in its own transaction."""
        with self._lock:
            if self._closed:
                raise ClosedError("collector is shutting down")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(None, fn, future))
        return future

    # -- the writer thread -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            group: list[_Job] = [item]
            rows = item.batch.rows if item.batch else 0
            stop_after = False
            # Group commit: take whatever else is already waiting, up to a bound.
            while rows < self.max_group_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                group.append(nxt)
                rows += nxt.batch.rows if nxt.batch else 0
            self._commit_group(group)
            if stop_after:
                return

    def _commit_group(self, group: list[_Job]) -> None:
        batches = [j for j in group if j.batch is not None]
        fns = [j for j in group if j.fn is not None]
        if batches:
            self._commit_batches(batches)
        for job in fns:
            assert job.fn is not None
            started = time.perf_counter()
            try:
                self.conn.execute("BEGIN")
                result = job.fn(self.conn)
                self.conn.execute("COMMIT")
            except Exception as exc:
                self._rollback()
                job.future.set_exception(exc)
            else:
                self._note_checkpoint(time.perf_counter() - started, wrote=False)
                job.future.set_result(result)

    def _note_checkpoint(self, seconds: float, wrote: bool) -> None:
        """Count the transaction just committed as a checkpoint if it left no log.

        DuckDB checkpoints inside the commit that takes its write-ahead log past
        ``checkpoint_threshold``, and that commit waits for it. A commit that writes
        anything leaves a log, which a checkpoint removes: no log after a transaction that
        wrote (``wrote``, or the log was there before) is the sign of a checkpoint.
        """
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            size = 0
        if size == 0 and (wrote or self._wal_bytes > 0):
            self.stats.checkpoints += 1
            self.stats.checkpoint_seconds_total += seconds
        self._wal_bytes = size

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.conn.execute("ROLLBACK")

    def _commit_batches(self, jobs: list[_Job]) -> None:
        started = time.perf_counter()
        now = self._last_commit_ns = max(time.time_ns(), self._last_commit_ns + 1)
        batches = [job.batch for job in jobs if job.batch is not None]
        info = CommitInfo()
        try:
            try:
                _store_new(self.conn, batches, now)
                results = [
                    WriteResult(b.rows, b.received - b.rows, len(b.rejections)) for b in batches
                ]
            except duckdb.ConstraintException:
                # Some record is stored already (a retried export): store the group again,
                # skipping what is there.
                self._rollback()
                results = self._store(batches, now)
            info.rows = sum(result.stored for result in results)
        except Exception as exc:
            log.exception("commit failed")
            self._rollback()
            self._release(jobs)
            for job in jobs:
                job.future.set_exception(StoreError(f"commit failed: {exc}"))
            return
        elapsed = time.perf_counter() - started
        self._release(jobs)
        stats = self.stats
        stats.count_commit(elapsed)
        self._note_checkpoint(elapsed, wrote=info.rows > 0)
        for job, result in zip(jobs, results, strict=True):
            stats.received += job.batch.received if job.batch else 0
            stats.stored += result.stored
            stats.duplicates += result.duplicates
            stats.rejected += result.rejected
            job.future.set_result(result)
        if self.on_commit is not None and info.rows:
            try:
                self.on_commit(info)
            except Exception:
                log.exception("post-commit hook failed")

    def _store(self, batches: list[PreparedBatch], now: int) -> list[WriteResult]:
        """Store a commit group, some of whose records may be stored already.

        One transaction; returns what each batch stored and duplicated.
        """
        conn = self.conn
        results = [WriteResult(rejected=len(b.rejections)) for b in batches]
        conn.execute("BEGIN")
        for kind in _TABLES:
            stored = _insert_group(conn, kind, [getattr(b, kind.table) for b in batches], now)
            for result, count in zip(results, stored, strict=True):
                result.stored += count
        _new_rejections = _rejection_table(batches)
        if _new_rejections is not None:
            conn.execute(_REJECTIONS_SQL.format(now=now))
        for batch, result in zip(batches, results, strict=True):
            result.duplicates = batch.received - result.stored
        conn.execute("COMMIT")
        return results

    def _release(self, jobs: list[_Job]) -> None:
        freed = sum((j.batch.rows + len(j.batch.rejections)) for j in jobs if j.batch)
        with self._lock:
            self._pending_rows -= freed
