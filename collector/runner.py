"""Runs the pure analysis core inside the collector: incrementally after commits, and a sweep.

Each commit wakes the runner, which reads the next slice of the backlog (records stored
after its progress mark) from the store. It gathers every record of the sagas those touch
(whole traces, traces joined by links, earlier sagas sharing an identity key), analyses
them together, builds their rows and has the writer replace the stored rows of those
sagas, with the new mark, in one transaction. A periodic sweep re-evaluates open sagas so
stalls appear without new traffic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from collector.analysis.classify import MIN_LEARNED_THRESHOLD_NS
from collector.analysis.config import SagaConfig
from collector.analysis.identity import identity_keys
from collector.analysis.model import AnalysisResult, Finding, Saga, Step
from collector.analysis.stats import TERMINAL_SHARE, LearnedStats, TransitionStats
from collector.normalize.records import EventRecord, LogRecord, SpanRecord
from collector.store.columns import attribute_columns, to_json
from collector.store.queries import Progress, load_progress
from collector.store.records_io import load_events, load_logs, load_spans
from collector.store.writer import last_ingested_ns
from dashboard.format import count_label

if TYPE_CHECKING:
    from collector.service import Collector
    from collector.store.writer import CommitInfo

log = logging.getLogger(__name__)

OPEN_STATUSES = ("running", "stalled")
# Raise when the analysis makes something different of the same records (a new status, a
# step named otherwise, a finding added): stores analysed before are analysed again.
ANALYSIS_VERSION = 2
MAX_PAUSE_S = 5.0  # the longest a pass waits for ingest (see AnalysisRunner._yield_to_ingest)


@dataclass
class Working:
    """The records gathered for one analysis pass."""

    trace_ids: set[str] = field(default_factory=set)
    event_keys: set[str] = field(default_factory=set)
    spans: list[SpanRecord] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    # Every stored saga that owns one of these records, or shares an identity key with them.
    old_sagas: set[str] = field(default_factory=set)


def _unnest(conn: duckdb.DuckDBPyConnection, sql: str, values: list[str]) -> list[tuple[Any, ...]]:
    if not values:
        return []
    return conn.execute(sql, [values]).fetchall()


def gather(
    conn: duckdb.DuckDBPyConnection,
    trace_ids: set[str],
    event_keys: set[str],
    config: SagaConfig,
    max_rounds: int = 6,
) -> Working:
    """Grow a dirty set to every record of the sagas it touches, reading with ``conn``."""
    w = Working()
    new_traces, new_events = set(trace_ids), set(event_keys)
    seen_keys: set[str] = set()
    for _ in range(max_rounds):
        if not new_traces and not new_events:
            break
        traces, events = sorted(new_traces - w.trace_ids), sorted(new_events - w.event_keys)
        w.trace_ids |= new_traces
        w.event_keys |= new_events
        spans = load_spans(conn, traces)
        logs = load_logs(conn, traces)
        loaded_event_keys = {e.event_key for e in w.events}
        evs = [e for e in load_events(conn, events, traces) if e.event_key not in loaded_event_keys]
        w.spans += spans
        w.logs += logs
        w.events += evs
        w.event_keys |= {e.event_key for e in evs}
        new_traces, new_events = set(), set()
        # Traces joined by links, in both directions.
        for s in spans:
            for link in s.links:
                tid = link.get("trace_id", "")
                if tid and tid not in w.trace_ids:
                    new_traces.add(tid)
        for (tid,) in _unnest(
            conn, "SELECT from_trace FROM trace_links WHERE to_trace IN (SELECT unnest(?))", traces
        ):
            new_traces.add(tid)
        for e in evs:
            if e.trace_id and e.trace_id not in w.trace_ids:
                new_traces.add(e.trace_id)
        # Earlier sagas sharing an identity key, or owning these traces/events.
        keys: set[str] = set()
        records: list[SpanRecord | LogRecord | EventRecord] = [*spans, *logs, *evs]
        for rec in records:
            keys.update(identity_keys(rec, config))
        keys -= seen_keys
        seen_keys |= keys
        sagas = {
            r[0]
            for r in _unnest(
                conn,
                "SELECT saga_key FROM saga_identity WHERE identity_key IN (SELECT unnest(?))",
                sorted(keys),
            )
        }
        sagas |= {
            r[0]
            for r in _unnest(
                conn,
                "SELECT saga_key FROM saga_traces WHERE trace_id IN (SELECT unnest(?))",
                traces,
            )
        }
        sagas |= {
            r[0]
            for r in _unnest(
                conn,
                "SELECT saga_key FROM saga_events WHERE event_key IN (SELECT unnest(?))",
                events,
            )
        }
        sagas -= w.old_sagas
        w.old_sagas |= sagas
        for (tid,) in _unnest(
            conn,
            "SELECT trace_id FROM saga_traces WHERE saga_key IN (SELECT unnest(?))",
            sorted(sagas),
        ):
            if tid not in w.trace_ids:
                new_traces.add(tid)
        for (ek,) in _unnest(
            conn,
            "SELECT event_key FROM saga_events WHERE saga_key IN (SELECT unnest(?))",
            sorted(sagas),
        ):
            if ek not in w.event_keys:
                new_events.add(ek)
    return w


def result_tables(result: AnalysisResult, now_ns: int) -> dict[str, pa.Table]:
    """The rows a pass stores, as Arrow tables named after their tables (pure).

    Built by the analysis thread, so the writer thread, which ingest waits for, only
    deletes and inserts. Findings carry their detection time here; :func:`store_results`
    keeps the first one of findings that persist.
    """
    tables = saga_tables(result.sagas, result.steps, result.findings, now_ns)
    tables.update(membership_tables(result))
    return tables


def saga_tables(
    sagas: list[Saga], steps: list[Step], findings: list[Finding], now_ns: int
) -> dict[str, pa.Table]:
    """The ``sagas``, ``steps`` and ``findings`` rows of some sagas (each saga's steps
    together, in order)."""
    tables: dict[str, pa.Table] = {}
    # Saga and Step fields are the table's columns, name for name.
    saga_columns = _fields(Saga, sagas)
    saga_columns["updated_ns"] = [now_ns] * len(sagas)
    tables["sagas"] = pa.table(saga_columns)
    # Flow queries group steps by saga type and by the step that came next: both are stored.
    step_columns = _fields(Step, steps)
    type_of = {s.saga_key: s.saga_type for s in sagas}
    keys, seqs, names = step_columns["saga_key"], step_columns["seq"], step_columns["name"]
    step_columns["saga_type"] = [type_of.get(k, "") for k in keys]
    # The analysis lists each saga's steps together, in order: the next one is adjacent.
    step_columns["next_step"] = [
        names[i + 1] if keys[i + 1] == keys[i] and seqs[i + 1] == seqs[i] + 1 else None
        for i in range(len(keys) - 1)
    ] + ([None] if keys else [])
    tables["steps"] = pa.table(step_columns)
    tables["findings"] = pa.table(
        {
            "finding_id": [f.finding_id for f in findings],
            "saga_key": [f.saga_key for f in findings],
            "kind": [f.kind for f in findings],
            "severity": [f.severity for f in findings],
            "step": [f.step for f in findings],
            "explanation": [f.explanation for f in findings],
            "evidence": [f.evidence for f in findings],
            "detected_ns": [f.detected_ns for f in findings],
            "details": [to_json(f.details) for f in findings],
        }
    )
    return tables


def membership_tables(result: AnalysisResult) -> dict[str, pa.Table]:
    """Which traces, events and identity keys belong to which saga; which traces link."""
    tables: dict[str, pa.Table] = {}
    traces, events = result.trace_saga, result.event_saga
    tables["saga_traces"] = pa.table({"trace_id": list(traces), "saga_key": list(traces.values())})
    tables["saga_events"] = pa.table({"event_key": list(events), "saga_key": list(events.values())})
    tables["saga_identity"] = pa.table(
        {"identity_key": list(result.identity), "saga_key": list(result.identity.values())}
    )
    ordered = sorted(result.links)
    tables["trace_links"] = pa.table(
        {"from_trace": [a for a, _ in ordered], "to_trace": [b for _, b in ordered]}
    )
    return tables


def insert_sql(name: str, table: pa.Table, source: str) -> str:
    """The statement inserting ``table``'s rows into the table ``name`` from ``source``, a
    name DuckDB finds it under. Trace links are no saga's: one may be stored already."""
    names = ", ".join(table.column_names)
    conflict = " ON CONFLICT DO NOTHING" if name == "trace_links" else ""
    return f"INSERT INTO {name} ({names}) SELECT {names} FROM {source}{conflict}"


# Records that the backlog is analysed up to the one row of ``_progress``, a local of the
# function that runs it (see :func:`progress_table`), read by name.
PROGRESS_SQL = (
    "UPDATE analysis_progress SET ingested_ns = p.ns, record = p.record "
    "FROM _progress p WHERE id = 1"
)


def analysis_basis(config: SagaConfig) -> str:
    """What an analysis result depends on besides the records: the analysis itself and the
    saga definitions, as ``"<version>:<digest of the definitions>"``."""
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:16]
    return f"{ANALYSIS_VERSION}:{digest}"


def reanalysis_reason(stored: str, current: str) -> str:
    """Why a store analysed on ``stored`` is analysed again on ``current``; "" if it is not."""
    if stored == current:
        return ""
    stored_version, _, _ = stored.partition(":")
    current_version, _, _ = current.partition(":")
    if stored_version != current_version:
        return "this sagalens analyses sagas differently from the one that analysed them"
    return "the saga definitions changed since they were analysed"


def begin_reanalysis(conn: duckdb.DuckDBPyConnection, basis: str) -> tuple[str, str]:
    """Analyse everything stored again if it was analysed on another basis.

    Moves the progress mark back to the start, so the runner's passes go through the whole
    store at their usual pace, each replacing its sagas' rows, and records the new basis at
    once: a restart halfway resumes where the passes were. Returns the reason ("" when the
    basis is the same) and what is to be analysed again ("1,200 traces and 35 events").
    """
    row = conn.execute("SELECT analysed_with FROM analysis_progress").fetchone()
    reason = reanalysis_reason(str(row[0]) if row else "", basis)
    if not reason:
        return "", ""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM sagas), (SELECT count(DISTINCT trace_id) FROM spans), "
        "(SELECT count(*) FROM events)"
    ).fetchone()
    sagas, traces, events = (int(v) for v in row) if row else (0, 0, 0)
    if not sagas:  # nothing analysed yet: nothing to redo, the backlog stays as it is
        record_basis(conn, basis)
        return "", ""
    record_basis(conn, basis, reason, last_ingested_ns(conn) + 1)
    save_progress(conn, (0, ""))
    records = count_label(traces, "trace")
    if events:
        records += f" and {count_label(events, 'event')}"
    return reason, records


def record_basis(
    conn: duckdb.DuckDBPyConnection, basis: str, reanalysis: str = "", until_ns: int = 0
) -> None:
    """Record what the stored sagas are analysed with, and, while they are analysed again,
    why and up to which commit (see :func:`collector.store.queries.analysis_status`)."""
    conn.execute(
        "UPDATE analysis_progress SET analysed_with = ?, reanalysis = ?, reanalysis_until_ns = ? "
        "WHERE id = 1",
        [basis, reanalysis, until_ns],
    )


def save_progress(conn: duckdb.DuckDBPyConnection, progress: Progress) -> None:
    """Record that the backlog is analysed up to ``progress``, on its own."""
    conn.execute(
        "UPDATE analysis_progress SET ingested_ns = ?, record = ? WHERE id = 1", list(progress)
    )


def progress_table(progress: Progress) -> pa.Table:
    """``progress`` as the one-row table :data:`PROGRESS_SQL` reads."""
    return pa.table({"ns": pa.array([progress[0]], pa.int64()), "record": [progress[1]]})


# Tables that belong to sagas: a pass replaces the rows of every saga it touched.
SAGA_TABLES = ("sagas", "steps", "findings", "saga_traces", "saga_events", "saga_identity")


def store_results(
    conn: duckdb.DuckDBPyConnection,
    tables: dict[str, pa.Table],
    old_sagas: set[str],
    progress: Progress | None = None,
) -> None:
    """Replace the stored rows of every saga in ``tables`` or ``old_sagas`` (in a transaction).

    With ``progress``, also record that the backlog is analysed up to it, in the same
    transaction: a pass counts as done exactly when its results are stored.
    """
    # Every stored saga has its row in ``sagas``; a key this pass made that is neither an
    # old saga nor there has nothing to replace, so the common case (new sagas) deletes
    # nothing. Each DELETE costs a table scan on the writer thread, which ingest waits for.
    fresh = sorted(set(tables["sagas"].column("saga_key").to_pylist()) - old_sagas)
    existing = _unnest(
        conn, "SELECT saga_key FROM sagas WHERE saga_key IN (SELECT unnest(?))", fresh
    )
    stale = sorted(old_sagas | {r[0] for r in existing})
    # Keep first detection time and acknowledgements of findings that persist.
    kept: dict[str, tuple[Any, Any, Any]] = {
        r[0]: (r[1], r[2], r[3])
        for r in _unnest(
            conn,
            "SELECT finding_id, detected_ns, acknowledged_ns, acknowledged_by FROM findings "
            "WHERE saga_key IN (SELECT unnest(?))",
            stale,
        )
    }
    findings = tables["findings"]
    if kept and findings.num_rows:
        ids = findings.column("finding_id").to_pylist()
        detected = findings.column("detected_ns").to_pylist()
        previous = [kept.get(i, (d, None, None)) for i, d in zip(ids, detected, strict=True)]
        findings = findings.set_column(
            findings.schema.get_field_index("detected_ns"),
            "detected_ns",
            pa.array([p[0] for p in previous], pa.int64()),
        )
        findings = findings.append_column(
            "acknowledged_ns", pa.array([p[1] for p in previous], pa.int64())
        ).append_column("acknowledged_by", pa.array([p[2] for p in previous], pa.string()))
    # The writes are one statement list, one call into DuckDB: each call has to take the
    # GIL back when it returns, which costs the writer thread, that ingest waits for, up
    # to the interpreter's switch interval while receivers decode (see _store_new in
    # collector.store.writer). The statements read these tables from this function's
    # locals by name (DuckDB's replacement scan of Python objects).
    _new_sagas = tables["sagas"]
    _new_steps = tables["steps"]
    _new_findings = findings
    _new_saga_traces = tables["saga_traces"]
    _new_saga_events = tables["saga_events"]
    _new_saga_identity = tables["saga_identity"]
    _new_trace_links = tables["trace_links"]
    new = {
        "sagas": _new_sagas,
        "steps": _new_steps,
        "findings": _new_findings,
        "saga_traces": _new_saga_traces,
        "saga_events": _new_saga_events,
        "saga_identity": _new_saga_identity,
        "trace_links": _new_trace_links,
    }
    statements = []
    if progress is not None:
        # With ``progress``, the pass counts as done exactly when its results are stored.
        _progress = progress_table(progress)
        statements.append(PROGRESS_SQL)
    # This also drops the old membership rows of records whose saga changed key: gather
    # put every saga owning a membership row of this pass's traces, events or identity
    # keys into ``old_sagas``.
    if stale:
        _stale = pa.table({"saga_key": stale})
        statements += [
            f"DELETE FROM {table} WHERE saga_key IN (SELECT saga_key FROM _stale)"
            for table in SAGA_TABLES
        ]
    statements += [
        insert_sql(name, table, f"_new_{name}") for name, table in new.items() if table.num_rows
    ]
    if statements:
        conn.execute(";\n".join(statements))


# The analysis backlog is every record stored after the progress mark, in the order
# (ingested_ns, id): a trace id, or EVENT_PREFIX + event key for events. Each commit has its
# own ingested_ns, so the mark moves commit by commit, and within a large commit id by id.
EVENT_PREFIX = "event:"

_BACKLOG_ROWS = """
    SELECT ingested_ns AS ns, trace_id AS id FROM spans WHERE ingested_ns >= $ns
    UNION ALL SELECT ingested_ns, trace_id FROM logs WHERE ingested_ns >= $ns AND trace_id <> ''
    UNION ALL SELECT ingested_ns, trace_id FROM events WHERE ingested_ns >= $ns AND trace_id <> ''
    UNION ALL SELECT ingested_ns, $prefix || event_key FROM events WHERE ingested_ns >= $ns
"""
# The first ``limit`` ids past the mark. The window up to the ingested_ns of the first
# ``rows`` records past it keeps the sort small however long the backlog is (zone maps
# skip what came before the mark; records past the window are not read beyond ns).
_BACKLOG_SQL = f"""
WITH backlog AS ({_BACKLOG_ROWS}),
pending AS (SELECT ns, id FROM backlog WHERE ns > $ns OR id > $id),
window_end AS (SELECT max(ns) AS ns FROM (SELECT ns FROM pending ORDER BY ns LIMIT $rows))
SELECT DISTINCT p.ns, p.id FROM pending p, window_end w WHERE p.ns <= w.ns
ORDER BY p.ns, p.id LIMIT $limit
"""


def next_backlog(
    conn: duckdb.DuckDBPyConnection, after: Progress, limit: int
) -> list[tuple[int, str]]:
    """The next ``limit`` (ingested_ns, id) of the backlog past ``after``, in order."""
    params = {
        "ns": after[0],
        "id": after[1],
        "prefix": EVENT_PREFIX,
        "rows": limit * 16,  # a trace has many records: enough rows for ``limit`` ids
        "limit": limit,
    }
    return [(int(ns), str(i)) for ns, i in conn.execute(_BACKLOG_SQL, params).fetchall()]


def _fields(cls: Any, items: list[Any]) -> dict[str, list[Any]]:
    names = [f.name for f in dataclasses.fields(cls)]
    return dict(zip(names, map(list, attribute_columns(items, names)), strict=True))


def analyze_working(
    work: Working, config: SagaConfig, now_ns: int, learned: LearnedStats | None = None
) -> AnalysisResult:
    from collector.analysis.core import analyze

    return analyze(work.spans, work.logs, work.events, config, now_ns, learned)


_LEARN_SQL = """
WITH recent AS (
    SELECT saga_key, coalesce(saga_type, '') AS saga_type FROM sagas
    ORDER BY last_progress_ns DESC LIMIT ?
), forward AS (
    SELECT s.saga_key, r.saga_type, s.name, s.end_ns,
           lead(s.name) OVER w AS next_name, lead(s.end_ns) OVER w AS next_end,
           row_number() OVER (PARTITION BY s.saga_key ORDER BY s.seq DESC) = 1 AS is_last
    FROM steps s JOIN recent r USING (saga_key)
    WHERE s.step_type <> 'compensation' AND s.outcome = 'ok' AND s.end_ns > 0
    WINDOW w AS (PARTITION BY s.saga_key ORDER BY s.seq)
), gaps AS (
    SELECT saga_type, name || '->' || next_name AS key, greatest(0, next_end - end_ns) AS gap
    FROM forward WHERE next_name IS NOT NULL
    UNION ALL
    SELECT saga_type, name || '->*', greatest(0, next_end - end_ns)
    FROM forward WHERE next_name IS NOT NULL
), ranked AS (
    SELECT saga_type, key, gap,
           row_number() OVER (PARTITION BY saga_type, key ORDER BY gap) AS rank,
           count(*) OVER (PARTITION BY saga_type, key) AS samples
    FROM gaps
)
SELECT 'transition', saga_type, key, samples, gap FROM ranked
WHERE rank = greatest(1, (99 * samples + 99) // 100)
UNION ALL
SELECT 'step', saga_type, name, count(DISTINCT saga_key),
       count(DISTINCT saga_key) FILTER (WHERE is_last)
FROM forward GROUP BY saga_type, name
"""


def learn_from_store(
    conn: duckdb.DuckDBPyConnection, recent_sagas: int = 20_000, min_terminal_samples: int = 20
) -> LearnedStats:
    """Learn step-transition percentiles and terminal steps from the most recent sagas.

    The same statistics as :func:`learn_stats` (nearest-rank p99 of the gaps between
    consecutive completed forward steps; a step is terminal when it ends enough of the
    sagas it appears in), computed inside DuckDB: the sweep runs this every few seconds
    and must not pull a few hundred thousand steps into Python to count them.
    """
    stats = LearnedStats()
    lasts: dict[str, set[str]] = {}
    for kind, saga_type, key, count, value in conn.execute(_LEARN_SQL, [recent_sagas]).fetchall():
        if kind == "transition":
            per_type = stats.transitions.setdefault(saga_type, {})
            per_type[key] = TransitionStats(int(count), int(value))
        elif value >= min_terminal_samples and value >= TERMINAL_SHARE * count:
            lasts.setdefault(saga_type, set()).add(key)
    stats.terminal_steps = {t: frozenset(names) for t, names in lasts.items()}
    return stats


def data_now(conn: duckdb.DuckDBPyConnection) -> int:
    """The latest time any stored record carries: 'now' for replayed data."""
    (latest,) = conn.execute(
        "SELECT greatest((SELECT max(greatest(start_ns, end_ns)) FROM spans), "
        "(SELECT max(time_ns) FROM logs), (SELECT max(greatest(time_ns, received_ns)) FROM events))"
    ).fetchall()[0]
    return int(latest) if latest is not None else 0


def pause_after_pass(pass_seconds: float, writer_busy: float, share: float) -> float:
    """How long analysis waits after a pass so that it takes ``share`` of the time.

    Only while ingest keeps the writer busy (``writer_busy``, its committing share of the
    last second or more, above a half); otherwise analysis runs flat out. Never longer
    than ``MAX_PAUSE_S``.
    """
    if not _yields_to_ingest(writer_busy, share):
        return 0.0
    return min(pass_seconds * (1 - share) / share, MAX_PAUSE_S)


def _yields_to_ingest(writer_busy: float, share: float) -> bool:
    """Whether analysis is held to ``share``: ingest kept the writer busy over half the time."""
    return share < 1 and writer_busy >= 0.5


def pause_and_carry(
    pass_seconds: float, carried: float, writer_busy: float, share: float
) -> tuple[float, float]:
    """The pause after a pass, and the pass time it leaves unbalanced for the next pause.

    Pass time that a pause cut short by :data:`MAX_PAUSE_S` did not balance (``carried``)
    counts towards the next pause, so analysis keeps to its share over several passes.
    Nothing is carried once ingest leaves the writer room.
    """
    unbalanced = pass_seconds + carried
    pause = pause_after_pass(unbalanced, writer_busy, share)
    if not pause:
        return 0.0, 0.0
    return pause, max(0.0, unbalanced - pause * share / (1 - share))


MIN_PASS_RECORDS = 50  # the smallest pass: below it, a pass's fixed costs would dominate


def next_pass_size(
    size: int, pass_seconds: float, writer_busy: float, share: float, limit: int
) -> int:
    """How many backlog ids the next pass takes, after one of ``size`` took ``pass_seconds``.

    While ingest keeps the writer busy, a pass is sized to last no longer than the pause
    :data:`MAX_PAUSE_S` can balance: a longer one would get a pause cut short by that cap
    and take more than ``share`` of the time. Otherwise, and at most, ``limit``.
    """
    if not _yields_to_ingest(writer_busy, share) or pass_seconds <= 0:
        return limit
    longest = MAX_PAUSE_S * share / (1 - share)
    # Aim below the longest pass: pass time does not fall quite in proportion to size.
    fitted = int(size * 0.8 * longest / pass_seconds)
    return max(MIN_PASS_RECORDS, min(limit, fitted))


def earliest_stall_ns(config: SagaConfig) -> int:
    """The shortest time without progress after which any saga can count as stalled."""
    timeouts = [
        step.timeout_ns for d in config.sagas.values() for step in d.steps if step.timeout_ns
    ]
    return min([MIN_LEARNED_THRESHOLD_NS, config.stall_after_ns, *timeouts])


# Sagas the sweep re-evaluates: running ones idle long enough to have stalled since, and
# stalled ones whose "no progress for ..." has grown by a tenth since it was last written
# (an hour-old stall is refreshed every six minutes, not on every sweep).
_DUE = (
    "(s.status = 'running' AND s.last_progress_ns <= $idle_since) OR (s.status = 'stalled' "
    "AND ($now - s.updated_ns) * 10 >= ($now - s.last_progress_ns))"
)
_DUE_TRACES = f"SELECT t.trace_id FROM saga_traces t JOIN sagas s USING (saga_key) WHERE {_DUE}"
_DUE_EVENTS = f"SELECT e.event_key FROM saga_events e JOIN sagas s USING (saga_key) WHERE {_DUE}"


class AnalysisRunner:
    """Background thread: incremental analysis after commits, plus a periodic stall sweep."""

    def __init__(
        self, collector: Collector, config: dict[str, Any], clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.collector = collector
        self.config = SagaConfig.from_dict(config.get("analysis", config) if config else {})
        self.clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._commits = 0  # commits seen, so a pass that found nothing knows it is current
        self.runs = 0
        self.failures = 0
        self.last_sweep = 0.0
        self.learned: LearnedStats | None = None
        self.max_pass_records = 1000
        self.pass_records = self.max_pass_records  # the next pass's size (see next_pass_size)
        self.progress: Progress = (0, "")
        self.paused_s = 0.0  # time given back to ingest (see _yield_to_ingest)
        self._busy_mark = (time.monotonic(), 0.0)  # (when, writer's commit seconds then)
        self._writer_busy = 0.0  # share of the last second or more the writer was committing
        self._unbalanced_s = 0.0  # pass time no pause has balanced yet (see _yield_to_ingest)

    def mark_dirty(self, info: CommitInfo) -> None:
        with self._lock:
            self._commits += 1
            self._idle.clear()
        self._wake.set()

    def start(self) -> None:
        if self.collector.settings.analysis:
            basis = analysis_basis(self.config)
            reason, records = self.collector.writer.run(
                lambda conn: begin_reanalysis(conn, basis)
            ).result()
            if reason:
                log.warning(
                    "analysing the stored sagas again (%s): %s; until that is done, those "
                    "not reached yet show their earlier analysis",
                    records,
                    reason,
                )
        cur = self.collector.writer.cursor()
        try:
            self.progress = load_progress(cur)
        finally:
            cur.close()
        self._wake.set()  # a backlog left by the last run is picked up at once
        self._thread = threading.Thread(target=self._loop, name="sagalens-analysis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass; what is not analysed yet waits in the store."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every committed record has been analysed (tests, import)."""
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        settings = self.collector.settings
        while not self._stop.is_set():
            self._wake.wait(timeout=settings.analysis_interval_s)
            self._wake.clear()
            try:
                started = time.monotonic()
                if self.run_once():
                    self._yield_to_ingest(time.monotonic() - started)
                # The sweep is analysis too: with analysis off, the stored sagas stay as the
                # last analysing collector left them.
                due = time.monotonic() - self.last_sweep >= settings.sweep_interval_s
                if settings.analysis and due:
                    self.sweep()
            except Exception:
                self.failures += 1
                log.exception("analysis pass failed")

    def run_once(self) -> bool:
        """Analyse the next bounded slice of the backlog; return whether there was one."""
        if not self.collector.settings.analysis:
            self._idle.set()
            return False
        with self._lock:
            commits = self._commits
        cur = self.collector.writer.cursor()
        try:
            # Bounded passes keep memory flat under sustained ingest; the rest waits its turn
            # in the store, where it also outlives a restart.
            pending = next_backlog(cur, self.progress, self.pass_records)
        finally:
            cur.close()
        if not pending:
            with self._lock:
                if commits == self._commits:
                    self._idle.set()
            return False
        traces = {i for _, i in pending if not i.startswith(EVENT_PREFIX)}
        events = {i[len(EVENT_PREFIX) :] for _, i in pending if i.startswith(EVENT_PREFIX)}
        try:
            self._analyse(traces, events, pending[-1])
        except Exception:
            # The mark would stay where it is and every later pass would fail on the same
            # records: one record the analysis cannot take must not hold back the rest.
            self.failures += 1
            log.exception("analysis pass failed; analysing its traces and events one by one")
            self._analyse_each(traces, events)
            self.collector.writer.run(lambda conn: save_progress(conn, pending[-1])).result()
        self.progress = pending[-1]
        self._wake.set()
        return True

    def _yield_to_ingest(self, pass_seconds: float) -> None:
        """While ingest keeps the writer busy, take at most ``analysis_share`` of the time.

        Analysis and ingest share the interpreter and the writer: a pass running flat out
        slows ingest by about as much time as it takes. When the writer has been busy for
        more than half of the last second or more, pause so that passes take their
        share only, and size the next pass so that its pause can; what waits meanwhile is in
        the store and is analysed when ingest eases.
        """
        committing = self.collector.writer.stats.commit_seconds_total
        now = time.monotonic()
        since, committing_before = self._busy_mark
        # Over a second or more: one slow commit in a short window is not a busy writer.
        if now - since >= 1.0:
            self._writer_busy = (committing - committing_before) / (now - since)
            self._busy_mark = (now, committing)
        share = self.collector.settings.analysis_share
        pause, self._unbalanced_s = pause_and_carry(
            pass_seconds, self._unbalanced_s, self._writer_busy, share
        )
        self.pass_records = next_pass_size(
            self.pass_records, pass_seconds, self._writer_busy, share, self.max_pass_records
        )
        if pause:
            self.paused_s += pause
            self._stop.wait(pause)

    def sweep(self) -> None:
        """Re-evaluate open sagas against the clock so stalls surface without new records."""
        self.last_sweep = time.monotonic()
        now = self.clock()
        due = {"idle_since": now - earliest_stall_ns(self.config), "now": now}
        cur = self.collector.writer.cursor()
        try:
            self.learned = learn_from_store(cur)
            rows = cur.execute(_DUE_TRACES, due).fetchall()
            events = cur.execute(_DUE_EVENTS, due).fetchall()
        finally:
            cur.close()
        # In bounded passes, like new records: a million open sagas must not load at once.
        traces, keys = sorted({r[0] for r in rows}), sorted({r[0] for r in events})
        step = self.max_pass_records
        for i in range(0, max(len(traces), len(keys)), step):
            if self._stop.is_set():
                return
            self._analyse(set(traces[i : i + step]), set(keys[i : i + step]))

    def _analyse_each(self, traces: set[str], events: set[str]) -> None:
        """Analyse each trace and event (with its saga) alone, skipping any that fails."""
        for trace_set, event_set in [({t}, set()) for t in sorted(traces)] + [
            (set(), {e}) for e in sorted(events)
        ]:
            try:
                self._analyse(trace_set, event_set)
            except Exception as exc:
                self.failures += 1
                what = f"trace {min(trace_set)}" if trace_set else f"event {min(event_set)}"
                log.error("cannot analyse %s, skipped until its saga changes: %r", what, exc)

    def _analyse(
        self, traces: set[str], events: set[str], progress: Progress | None = None
    ) -> None:
        cur = self.collector.writer.cursor()
        try:
            work = gather(cur, traces, events, self.config)
        finally:
            cur.close()
        now = self.clock()
        result = analyze_working(work, self.config, now, self.learned)
        tables = result_tables(result, now)
        self.collector.writer.run(
            lambda conn: store_results(conn, tables, work.old_sagas, progress)
        ).result()
        self.runs += 1
