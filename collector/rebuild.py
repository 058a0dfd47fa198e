"""Full rebuild: analyse everything stored at once (``sagalens import``, benchmarks)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from collector.analysis.config import SagaConfig
from collector.runner import (
    SAGA_TABLES,
    Working,
    analyze_working,
    data_now,
    result_tables,
    store_results,
)
from collector.store.records_io import load_events, load_logs, load_spans
from collector.store.writer import last_ingested_ns


@dataclass
class RebuildStats:
    """What a rebuild analysed, and how long each phase took."""

    records: int = 0
    sagas: int = 0
    load_s: float = 0.0
    analyse_s: float = 0.0
    store_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.load_s + self.analyse_s + self.store_s


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


def load_everything(conn: duckdb.DuckDBPyConnection) -> Working:
    """Every stored record the analysis reads: all spans and events, logs with a trace."""
    work = Working()
    work.spans = load_spans(conn, None)
    work.logs = load_logs(conn, None)
    work.events = load_events(conn, None, [])
    return work


def rebuild(
    conn: duckdb.DuckDBPyConnection, config: SagaConfig, now_ns: int | None = None
) -> RebuildStats:
    """Analyse everything stored and replace every saga's rows, in one transaction.

    ``now_ns`` defaults to the latest time the data carries, so replayed data shows its
    stalls.
    """
    stats = RebuildStats()
    started = time.perf_counter()
    with gc_paused():
        work = load_everything(conn)
        now = data_now(conn) if now_ns is None else now_ns
        stats.records = len(work.spans) + len(work.logs) + len(work.events)
        loaded = time.perf_counter()
        stats.load_s = loaded - started
        tables = result_tables(work, analyze_working(work, config, now), now)
        del work
        analysed = time.perf_counter()
        stats.analyse_s = analysed - loaded
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
