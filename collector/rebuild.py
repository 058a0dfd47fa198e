"""Full rebuild: analyse everything stored at once (``sagalens import``, benchmarks)."""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from collector.analysis.config import SagaConfig
from collector.analysis.core import Grouped, analyze_sagas, group_records
from collector.runner import (
    SAGA_TABLES,
    Working,
    data_now,
    membership_tables,
    saga_tables,
    store_results,
)
from collector.store.records_io import load_events, load_logs, load_spans
from collector.store.writer import last_ingested_ns

log = logging.getLogger(__name__)


@dataclass
class RebuildStats:
    """What a rebuild analysed, and how long each phase took."""

    records: int = 0
    sagas: int = 0
    processes: int = 1  # the analysis ran in
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
_shared: tuple[Grouped, SagaConfig, int] | None = None


def _analyse_part(index: int, parts: int) -> dict[str, pa.Table]:
    """Analyse every ``parts``-th saga from the ``index``-th: its sagas, steps, findings."""
    assert _shared is not None
    grouped, config, now = _shared
    keys = grouped.saga_keys[index::parts]
    return saga_tables(*analyze_sagas(grouped, keys, config, now), now)


def analyse_all(
    work: Working, config: SagaConfig, now: int, processes: int = 1
) -> tuple[dict[str, pa.Table], int]:
    """Every saga in ``work``, analysed and made into rows, in up to ``processes`` processes;
    also how many processes that took.

    Identity is resolved over all the records first, in this process; the sagas it finds
    are then analysed each on its own, so they are dealt out to processes forked from this
    one, which inherit the records rather than receive them. The rows are the same as one
    process makes, only in another order.
    """
    global _shared
    grouped = group_records(work.spans, work.logs, work.events, config)
    parts = parts_for(len(grouped.saga_keys), processes)
    _shared = (grouped, config, now)
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
    tables.update(membership_tables(work, grouped.result))
    return tables, parts


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
        work = load_everything(conn)
        now = data_now(conn) if now_ns is None else now_ns
        stats.records = len(work.spans) + len(work.logs) + len(work.events)
        loaded = time.perf_counter()
        stats.load_s = loaded - started
        if processes is None:
            processes = default_processes()
        tables, stats.processes = analyse_all(work, config, now, processes)
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
