"""Full rebuild: analyse everything stored at once (``sagalens import``, benchmarks)."""

from __future__ import annotations

import gc
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
from collector.analysis.identity import Resolution, resolve_traces, trace_keys
from collector.analysis.model import AnalysisResult
from collector.normalize.records import EventRecord, LogRecord, SpanRecord
from collector.runner import (
    SAGA_TABLES,
    data_now,
    membership_tables,
    saga_tables,
    store_results,
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
    analyse_s: float = 0.0  # building each saga's records, analysing them, making rows
    store_s: float = 0.0

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


@dataclass
class Stored:
    """Everything stored that the analysis reads: the spans' analysed columns (records are
    built from them part by part), logs with a trace and all events as records, and what
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
    """
    cursor = conn.cursor()
    try:
        with ThreadPoolExecutor(1) as pool:
            identity = pool.submit(load_identity_columns, cursor, config.identity_attributes)
            spans = load_span_table(conn, ANALYSED_SPAN_FIELDS)
            logs = load_logs(conn, None)
            events = load_events(conn, None, [])
            return Stored(spans, logs, events, identity.result())
    finally:
        cursor.close()


@dataclass
class Assigned:
    """Which saga every stored record belongs to, as a rebuild resolved it."""

    resolution: Resolution
    saga_keys: list[str]  # sorted
    trace_saga: dict[str, str]  # trace id -> saga key, of the traces with stored spans
    links: set[tuple[str, str]]  # (from trace, to trace) of every span link between traces
    # of each stored span, in Stored.spans order: its saga's index in saga_keys, -1 for none
    span_saga: np.ndarray

    def result(self, stored: Stored) -> AnalysisResult:
        """The identity and membership part of the analysis result."""
        event_saga = zip(stored.events, self.resolution.event_saga, strict=True)
        return AnalysisResult(
            identity=self.resolution.identity,
            trace_saga=self.trace_saga,
            event_saga={e.event_key: k for e, k in event_saga if k},
        )


def resolve_stored(stored: Stored, config: SagaConfig) -> Assigned:
    """Resolve identity over everything stored.

    It reads what :func:`load_stored` selected: the identity attributes and link targets
    of the spans that carry any (three in five in the benchmark's population), the spans
    of a trace that say the same folded into one (to one in five); no span record is built
    for it. See :func:`collector.store.records_io.load_identity_columns` and
    :func:`collector.analysis.identity.resolve_traces`.
    """
    columns = stored.identity
    traces = trace_keys(
        columns.trace_ids, columns.attributes, columns.conversation_ids, columns.links, config
    )
    resolution = resolve_traces(traces, stored.logs, stored.events, config)
    # Each distinct trace id of the stored spans once, and where each span's is among them.
    encoded = stored.spans.column("trace_id").combine_chunks().dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    saga_of_trace = list(map(resolution.trace_saga.get, distinct))
    trace_saga = {t: k for t, k in zip(distinct, saga_of_trace, strict=True) if k}
    sagas = set(trace_saga.values())
    sagas.update(k for k in resolution.log_saga if k)
    sagas.update(k for k in resolution.event_saga if k)
    saga_keys = sorted(sagas)
    links = {(t, linked) for t, keys in traces.items() for linked in keys.linked if linked != t}
    # of each span: its saga's index in saga_keys, -1 for none
    of_trace = pc.index_in(pa.array(saga_of_trace, pa.string()), pa.array(saga_keys, pa.string()))
    span_saga = of_trace.fill_null(-1).to_numpy()[encoded.indices.to_numpy()]
    return Assigned(resolution, saga_keys, trace_saga, links, span_saga)


# Fewer sagas than this per process and a process of its own costs more than it saves.
MIN_SAGAS_PER_PROCESS = 5_000


def default_processes() -> int:
    """Processes a rebuild analyses in: one per core it may run on, where fork is at hand."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1  # forking a process that holds the records is what makes it pay
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def parts_for(sagas: int, processes: int) -> int:
    """Into how many parts, one per process, to deal ``sagas`` out."""
    return max(1, min(processes, sagas // MIN_SAGAS_PER_PROCESS))


# What the forked processes analyse: set just before they start, so each inherits it.
_shared: tuple[Stored, Assigned, SagaConfig, int] | None = None


def _analyse_part(index: int, parts: int) -> dict[str, pa.Table]:
    """Analyse every ``parts``-th saga from the ``index``-th: its sagas, steps, findings.

    The part builds the records of its own sagas only, from the rows it selects.
    """
    assert _shared is not None
    stored, assigned, config, now = _shared
    resolution = assigned.resolution
    keys = assigned.saga_keys[index::parts]
    log_saga, event_saga = resolution.log_saga, resolution.event_saga
    logs, events = stored.logs, stored.events
    saga_spans, span_traces = _part_spans(stored.spans, assigned, index, parts)
    if parts > 1:
        mine = set(keys)
        chosen = [i for i, k in enumerate(log_saga) if k in mine]
        logs, log_saga = [logs[i] for i in chosen], [log_saga[i] for i in chosen]
        chosen = [i for i, k in enumerate(event_saga) if k in mine]
        events, event_saga = [events[i] for i in chosen], [event_saga[i] for i in chosen]
    grouped = gather_with_spans(
        resolution, saga_spans, span_traces, logs, log_saga, events, event_saga
    )
    return saga_tables(*analyze_sagas(grouped, keys, config, now), now)


def _part_spans(
    spans: pa.Table, assigned: Assigned, index: int, parts: int
) -> tuple[dict[str, list[SpanRecord]], list[str]]:
    """The span records of the ``index``-th part's sagas, each saga's in span order (see
    :func:`collector.analysis.core.gather_records`), and the traces they are of.

    Arrow selects, sorts and groups the rows; records are built for this part's only.
    """
    saga = assigned.span_saga
    # saga i is the (i % parts)-th part's, as keys[index::parts] deals them in _analyse_part
    mask = (saga >= 0) & (saga % parts == index)
    mine = spans.filter(pa.array(mask)).append_column("saga", pa.array(saga[mask]))
    mine = mine.sort_by([(c, "ascending") for c in ("saga", "start_ns", "trace_id", "span_id")])
    records = span_records(mine)
    order = mine.column("saga").to_numpy()
    bounds = (np.flatnonzero(order[1:] != order[:-1]) + 1).tolist()
    keys = assigned.saga_keys
    saga_spans = {
        keys[order[start]]: records[start:end]
        for start, end in zip([0, *bounds], [*bounds, len(records)], strict=True)
        if start < end
    }
    return saga_spans, pc.unique(mine.column("trace_id")).to_pylist()


def analyse_all(
    stored: Stored, assigned: Assigned, config: SagaConfig, now: int, processes: int = 1
) -> tuple[dict[str, pa.Table], int]:
    """Every saga ``assigned`` found, analysed and made into rows, in up to ``processes``
    processes; also how many processes that took.

    The sagas are dealt out to processes forked from this one, which inherit what was read
    and build the records of their own sagas only. The rows are the same as one process
    makes, only in another order.
    """
    global _shared
    parts = parts_for(len(assigned.saga_keys), processes)
    _shared = (stored, assigned, config, now)
    try:
        if parts == 1:
            pieces = [_analyse_part(0, 1)]
        else:
            fork = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(parts - 1, mp_context=fork) as pool:
                futures = [pool.submit(_analyse_part, i, parts) for i in range(1, parts)]
                pieces = [_analyse_part(0, parts)]
                for i, future in enumerate(futures, start=1):
                    try:
                        pieces.append(future.result())
                    except BrokenProcessPool:
                        # killed (out of memory, say): its part is analysed here instead
                        log.warning("a rebuild process stopped; analysing its sagas here")
                        pieces.append(_analyse_part(i, parts))
    finally:
        _shared = None
    tables = {
        name: pa.concat_tables([p[name] for p in pieces], promote_options="default")
        for name in pieces[0]
    }
    tables.update(membership_tables(assigned.result(stored), assigned.links))
    # DuckDB indexes and writes rows in key order faster: about a sixth of the store's time.
    tables = {name: table.sort_by(_ORDER[name]) for name, table in tables.items()}
    return tables, parts


# The key each table's rows are stored in order of.
_ORDER = {
    "sagas": "saga_key",
    "steps": [("saga_key", "ascending"), ("seq", "ascending")],
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
    with gc_paused():
        stored = load_stored(conn, config)
        now = data_now(conn) if now_ns is None else now_ns
        stats.records = stored.records
        loaded = time.perf_counter()
        stats.load_s = loaded - started
        assigned = resolve_stored(stored, config)
        resolved = time.perf_counter()
        stats.identity_s = resolved - loaded
        if processes is None:
            processes = default_processes()
        tables, stats.processes = analyse_all(stored, assigned, config, now, processes)
        del stored, assigned
        analysed = time.perf_counter()
        stats.analyse_s = analysed - resolved
    stats.sagas = tables["sagas"].num_rows
    # Everything stored is analysed: a collector opening this file has no backlog.
    progress = (last_ingested_ns(conn) + 1, "")
    conn.execute("BEGIN")
    try:
        for table in SAGA_TABLES:
            conn.execute(f"DELETE FROM {table}")
        store_results(conn, tables, set(), progress)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    stats.store_s = time.perf_counter() - analysed
    return stats
