"""Full rebuild: analyse everything stored at once (``sagalens import``, benchmarks)."""

from __future__ import annotations

import gc
import itertools
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector.analysis.config import SagaConfig
from collector.analysis.core import ANALYSED_SPAN_FIELDS, analyze_sagas, gather_with_spans
from collector.analysis.identity import Resolution, resolve_columns
from collector.analysis.model import AnalysisResult
from collector.normalize.records import EventRecord, LogRecord, SpanRecord
from collector.runner import (
    PROGRESS_SQL,
    SAGA_TABLES,
    analysis_basis,
    data_now,
    insert_sql,
    membership_tables,
    progress_table,
    record_basis,
    saga_tables,
)
from collector.store.records_io import (
    IdentityColumns,
    load_events,
    load_identity_columns,
    load_logs,
    load_span_table,
    span_records,
)
from collector.store.writer import last_ingested_ns

log = logging.getLogger(__name__)


@dataclass
class RebuildStats:
    """What a rebuild analysed, and how long each phase took."""

    records: int = 0
    sagas: int = 0
    processes: int = 1  # the analysis ran in
    load_s: float = 0.0  # reading the store
    identity_s: float = 0.0  # resolving which records make each saga
    # building each saga's records, analysing them, making rows and inserting them (a chunk
    # of sagas is inserted while the next are analysed)
    analyse_s: float = 0.0
    store_s: float = 0.0  # inserting the findings, and the commit

    @property
    def total_s(self) -> float:
        return self.load_s + self.identity_s + self.analyse_s + self.store_s


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a batch builds millions of objects.

    Loaded records and analysis results hold no reference cycles, yet every few hundred
    allocations the collector would walk the young ones, and every so often all of them:
    about a third of a rebuild's time. Reference counting still frees what is dropped.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# DuckDB setting: how many full row groups a bulk insert buffers before it writes them out.
_WRITE_BUFFER = "write_buffer_row_group_count"


@contextmanager
def _flushing_each_row_group(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Have DuckDB write each row group a bulk insert fills as soon as it is full.

    It buffers five by default, which is more than a rebuild's steps fill (100k sagas make
    about four): all of them were compressed and written in the commit, on one core, after
    the analysis. Written as they fill, most of that work overlaps the analysis (on the
    benchmark's population, alternated: commit 1.25 -> 0.75 s, rebuild 0.2-0.8 s faster).
    The setting is global, so it is put back after; DuckDB 1.4 has no such setting, and
    then nothing is changed.
    """
    row = conn.execute(
        "SELECT value FROM duckdb_settings() WHERE name = ?", [_WRITE_BUFFER]
    ).fetchone()
    if row is None:
        yield
        return
    conn.execute(f"SET {_WRITE_BUFFER} = 1")
    try:
        yield
    finally:
        conn.execute(f"SET {_WRITE_BUFFER} = {int(row[0])}")


@dataclass
class Stored:
    """Everything stored that the analysis reads: the spans' analysed columns (records are
    built from them chunk by chunk), logs with a trace and all events as records, and what
    the spans say about identity."""

    spans: pa.Table
    logs: list[LogRecord]
    events: list[EventRecord]
    identity: IdentityColumns

    @property
    def records(self) -> int:
        return int(self.spans.num_rows) + len(self.logs) + len(self.events)


def load_stored(conn: duckdb.DuckDBPyConnection, config: SagaConfig) -> Stored:
    """Read everything a rebuild analyses.

    DuckDB selects the spans' identity columns on another cursor while this thread builds
    log and event records: the query runs without the GIL, on the core that would idle.
    Both read on cursors of their own, whatever result ``conn`` has left unfetched.
    """
    cursor, other = conn.cursor(), conn.cursor()
    try:
        with ThreadPoolExecutor(1) as pool:
            identity = pool.submit(load_identity_columns, other, config.identity_attributes)
            spans = load_span_table(cursor, ANALYSED_SPAN_FIELDS)
            logs = load_logs(cursor, None)
            events = load_events(cursor, None, [])
            return Stored(spans, logs, events, identity.result())
    finally:
        cursor.close()
        other.close()


@dataclass
class Assigned:
    """Which saga every stored record belongs to, as a rebuild resolved it."""

    resolution: Resolution
    saga_keys: list[str]  # sorted
    trace_saga: dict[str, str]  # trace id -> saga key, of the traces with stored spans
    # of each stored span, in Stored.spans order: its saga's index in saga_keys, -1 for none
    span_saga: np.ndarray

    def result(self, stored: Stored) -> AnalysisResult:
        """The identity and membership part of the analysis result."""
        event_saga = zip(stored.events, self.resolution.event_saga, strict=True)
        return AnalysisResult(
            identity=self.resolution.identity,
            trace_saga=self.trace_saga,
            event_saga={e.event_key: k for e, k in event_saga if k},
            links=self.resolution.links,
        )


def resolve_stored(stored: Stored, config: SagaConfig) -> Assigned:
    """Resolve identity over everything stored.

    It reads what :func:`load_stored` selected: the identity attributes and link targets
    of the spans that carry any (three in five in the benchmark's population), the spans
    of a trace that say the same folded into one (to one in five); no span record is built
    for it. See :func:`collector.store.records_io.load_identity_columns` and
    :func:`collector.analysis.identity.resolve_columns`.
    """
    columns = stored.identity
    resolution = resolve_columns(
        columns.trace_ids,
        columns.attributes,
        columns.conversation_ids,
        columns.links,
        stored.logs,
        stored.events,
        config,
    )
    # Each distinct trace id of the stored spans once, and where each span's is among them.
    encoded = stored.spans.column("trace_id").combine_chunks().dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    saga_of_trace = list(map(resolution.trace_saga.get, distinct))
    trace_saga = {t: k for t, k in zip(distinct, saga_of_trace, strict=True) if k}
    sagas = set(trace_saga.values())
    sagas.update(k for k in resolution.log_saga if k)
    sagas.update(k for k in resolution.event_saga if k)
    saga_keys = sorted(sagas)
    # of each span: its saga's index in saga_keys, -1 for none
    of_trace = pc.index_in(pa.array(saga_of_trace, pa.string()), pa.array(saga_keys, pa.string()))
    span_saga = of_trace.fill_null(-1).to_numpy()[encoded.indices.to_numpy()]
    return Assigned(resolution, saga_keys, trace_saga, span_saga)


# Fewer sagas than this per process and a process of its own costs more than it saves.
MIN_SAGAS_PER_PROCESS = 5_000
# Each process takes this many chunks in turn, so none waits long for the slowest at the end.
CHUNKS_PER_PROCESS = 4
# A chunk's records are all in memory at once: more sagas than this make more chunks.
MAX_SAGAS_PER_CHUNK = 25_000


def default_processes() -> int:
    """Processes a rebuild analyses in: one per core it may run on, where fork is at hand."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1  # forking a process that holds the records is what makes it pay
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def processes_for(sagas: int, processes: int) -> int:
    """How many of ``processes`` to analyse ``sagas`` in: none below one's worth of sagas."""
    return max(1, min(processes, sagas // MIN_SAGAS_PER_PROCESS))


def chunk_bounds(sagas: int, processes: int) -> list[tuple[int, int]]:
    """The chunks to analyse ``sagas`` (sorted by key) in: ranges of their indices, in order."""
    if not sagas:
        return []
    chunks = -(-sagas // MAX_SAGAS_PER_CHUNK)
    if processes > 1:
        chunks = max(chunks, processes * CHUNKS_PER_PROCESS)
    chunks = min(chunks, sagas)
    return list(itertools.pairwise(sagas * i // chunks for i in range(chunks + 1)))


@dataclass
class _Plan:
    """Where each chunk's records are, worked out once for all chunks."""

    span_rows: np.ndarray  # the stored spans' rows in order of their saga index
    span_sagas: np.ndarray  # their saga indices, ascending (-1 first: spans of no saga)
    log_sagas: np.ndarray  # each log's saga index, -1 for none
    event_sagas: np.ndarray  # each event's saga index, -1 for none


def _plan(assigned: Assigned) -> _Plan:
    rows = np.argsort(assigned.span_saga, kind="stable")
    keys = pa.array(assigned.saga_keys, pa.string())
    resolution = assigned.resolution

    def index(sagas: list[str]) -> np.ndarray:
        found = pc.index_in(pa.array(sagas, pa.string()), keys)
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False))

    return _Plan(
        rows, assigned.span_saga[rows], index(resolution.log_saga), index(resolution.event_saga)
    )


# What the forked processes analyse: set just before they start, so each inherits it.
_shared: tuple[Stored, Assigned, SagaConfig, int, _Plan] | None = None


def _analyse_chunk(first: int, end: int) -> dict[str, pa.Table]:
    """Analyse the sagas ``saga_keys[first:end]``: their sagas, steps and findings rows,
    sagas and steps in key order.

    The chunk builds the records of its own sagas only, from the rows it selects.
    """
    assert _shared is not None
    stored, assigned, config, now, plan = _shared
    resolution = assigned.resolution
    saga_spans, span_traces = _chunk_spans(stored.spans, assigned, plan, first, end)
    chosen = np.flatnonzero((plan.log_sagas >= first) & (plan.log_sagas < end)).tolist()
    logs = [stored.logs[i] for i in chosen]
    log_saga = [resolution.log_saga[i] for i in chosen]
    chosen = np.flatnonzero((plan.event_sagas >= first) & (plan.event_sagas < end)).tolist()
    events = [stored.events[i] for i in chosen]
    event_saga = [resolution.event_saga[i] for i in chosen]
    grouped = gather_with_spans(
        resolution, saga_spans, span_traces, logs, log_saga, events, event_saga
    )
    keys = assigned.saga_keys[first:end]
    return saga_tables(*analyze_sagas(grouped, keys, config, now), now)


def _chunk_spans(
    spans: pa.Table, assigned: Assigned, plan: _Plan, first: int, end: int
) -> tuple[dict[str, list[SpanRecord]], list[str]]:
    """The span records of the sagas ``saga_keys[first:end]``, each saga's in span order
    (see :func:`collector.analysis.core.gather_records`), and the traces they are of.

    Arrow selects, sorts and groups the rows; records are built for this chunk's only.
    """
    start, stop = np.searchsorted(plan.span_sagas, [first, end]).tolist()
    mine = spans.take(pa.array(plan.span_rows[start:stop])).append_column(
        "saga", pa.array(plan.span_sagas[start:stop])
    )
    mine = mine.sort_by([(c, "ascending") for c in ("saga", "start_ns", "trace_id", "span_id")])
    records = span_records(mine)
    order = mine.column("saga").to_numpy()
    bounds = (np.flatnonzero(order[1:] != order[:-1]) + 1).tolist()
    keys = assigned.saga_keys
    saga_spans = {
        keys[order[a]]: records[a:b]
        for a, b in zip([0, *bounds], [*bounds, len(records)], strict=True)
        if a < b
    }
    return saga_spans, pc.unique(mine.column("trace_id")).to_pylist()


def analysed_chunks(
    stored: Stored, assigned: Assigned, config: SagaConfig, now: int, processes: int = 1
) -> Iterator[dict[str, pa.Table]]:
    """Every saga ``assigned`` found, analysed and made into rows, in up to ``processes``
    processes: first which traces, events and identity keys belong to which saga and
    which traces link (each table in key order), then the ``sagas``, ``steps`` and
    ``findings`` rows of one chunk of sagas after another, in key order.

    The chunks are dealt out to processes forked from this one, which inherit what was
    read and build the records of their own sagas only. This one takes each chunk's rows
    as it comes, in order, and is free to store them meanwhile. The rows are the same as
    one process makes.
    """
    global _shared
    keys = assigned.saga_keys
    processes = processes_for(len(keys), processes)
    chunks = chunk_bounds(len(keys), processes)

    def membership() -> dict[str, pa.Table]:
        tables = membership_tables(assigned.result(stored))
        return {name: table.sort_by(_ORDER[name]) for name, table in tables.items()}

    _shared = (stored, assigned, config, now, _plan(assigned))
    try:
        if processes == 1:
            yield membership()
            for first, end in chunks:
                yield _analyse_chunk(first, end)
            return
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(processes, mp_context=fork) as pool:
            futures = [pool.submit(_analyse_chunk, first, end) for first, end in chunks]
            yield membership()  # made while the processes analyse the first chunks
            for (first, end), future in zip(chunks, futures, strict=True):
                try:
                    tables = future.result()
                except BrokenProcessPool:
                    # killed (out of memory, say): its chunk is analysed here instead
                    log.warning("a rebuild process stopped; analysing its sagas here")
                    tables = _analyse_chunk(first, end)
                yield tables
    finally:
        _shared = None


# The key the rows of each table not stored chunk by chunk are sorted by (a chunk's sagas
# and steps come in key order).
_ORDER = {
    "findings": "finding_id",
    "saga_traces": "trace_id",
    "saga_events": "event_key",
    "saga_identity": "identity_key",
    "trace_links": [("from_trace", "ascending"), ("to_trace", "ascending")],
}


def rebuild(
    conn: duckdb.DuckDBPyConnection,
    config: SagaConfig,
    now_ns: int | None = None,
    processes: int | None = None,
) -> RebuildStats:
    """Analyse everything stored and replace every saga's rows, in one transaction.

    ``now_ns`` defaults to the latest time the data carries, so replayed data shows its
    stalls. ``processes`` defaults to one per core (see :func:`default_processes`).
    """
    stats = RebuildStats()
    started = time.perf_counter()
    with gc_paused(), _flushing_each_row_group(conn):
        stored = load_stored(conn, config)
        now = data_now(conn) if now_ns is None else now_ns
        stats.records = stored.records
        loaded = time.perf_counter()
        stats.load_s = loaded - started
        assigned = resolve_stored(stored, config)
        resolved = time.perf_counter()
        stats.identity_s = resolved - loaded
        stats.sagas = len(assigned.saga_keys)  # each makes one row of ``sagas``
        if processes is None:
            processes = default_processes()
        stats.processes = processes_for(stats.sagas, processes)
        # Everything stored is analysed: a collector opening this file has no backlog.
        _progress = progress_table((last_ingested_ns(conn) + 1, ""))  # PROGRESS_SQL reads it
        conn.execute("BEGIN")
        try:
            for name in SAGA_TABLES:
                conn.execute(f"DELETE FROM {name}")
            # Each chunk's rows are stored as they come, while the next are analysed; its
            # sagas and steps come in key order, so that the zone maps of the stored row
            # groups find one saga's rows without an index (see migration 6). Findings are
            # keyed by a hash: they are sorted once, at the end.
            findings = []
            for tables in analysed_chunks(stored, assigned, config, now, processes):
                if "findings" in tables:
                    findings.append(tables.pop("findings"))
                _insert_rows(conn, tables)
            del stored, assigned
            analysed = time.perf_counter()
            stats.analyse_s = analysed - resolved
            if findings:
                found = pa.concat_tables(findings, promote_options="default")
                _insert_rows(conn, {"findings": found.sort_by(_ORDER["findings"])})
            conn.execute(PROGRESS_SQL)
            record_basis(conn, analysis_basis(config))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise
    stats.store_s = time.perf_counter() - analysed
    return stats


def _insert_rows(conn: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table]) -> None:
    for name, rows in tables.items():
        if rows.num_rows:
            conn.execute(insert_sql(name, rows, "rows"))  # DuckDB reads ``rows`` by name
