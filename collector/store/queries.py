"""Read queries. Pure builders return ``(sql, params)``; :class:`Reader` runs them.

The Reader works on any DuckDB connection: a cursor of the collector's own connection
(live) or a file opened read-only (offline browsing of a copied file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import duckdb

from collector.analysis.model import FINDING_KINDS, SAGA_STATUSES
from collector.store.writer import last_ingested_ns


class QueryError(ValueError):
    """A bad filter or parameter from a user; the API turns it into HTTP 400."""


SAGA_SORTS = {
    "started": "started_ns",
    "last_progress": "last_progress_ns",
    # A running or stalled saga's duration runs to now (the filter's now_ns, a parameter).
    "duration": "(CASE WHEN ended_ns > 0 THEN ended_ns "
    "WHEN status IN ('running', 'stalled') THEN greatest(?, last_progress_ns) "
    "ELSE last_progress_ns END - started_ns)",
    "steps": "step_count",
    "findings": "finding_count",
    "open_findings": "open_finding_count",
    "type": "saga_type",
    "status": "status",
    "key": "saga_key",
}


# finding_count counts every finding the analysis raised; this, those nobody acknowledged yet.
OPEN_FINDING_COUNT = (
    "(SELECT count(*) FROM findings f WHERE f.saga_key = sagas.saga_key "
    "AND f.acknowledged_ns IS NULL)::INTEGER AS open_finding_count"
)


@dataclass(frozen=True, slots=True)
class SagaFilter:
    status: tuple[str, ...] = ()
    saga_type: tuple[str, ...] = ()
    service: str = ""
    from_ns: int = 0
    to_ns: int = 0
    finding_kind: str = ""
    q: str = ""  # substring of the saga key or a business key
    after: str = ""  # only sagas whose key sorts after this one: a cursor for key-ordered pages
    sort: str = "started"
    descending: bool = True
    limit: int = 50
    offset: int = 0
    now_ns: int = 0  # the time open sagas' durations run to, for sorting by duration


def build_saga_where(f: SagaFilter) -> tuple[str, list[Any]]:
    """WHERE clause (with leading ' WHERE ' or '') and params for a saga filter."""
    clauses: list[str] = []
    params: list[Any] = []
    for s in f.status:
        if s not in SAGA_STATUSES:
            raise QueryError(f"unknown status {s!r}; expected one of {', '.join(SAGA_STATUSES)}")
    if f.status:
        clauses.append(f"status IN ({', '.join('?' for _ in f.status)})")
        params.extend(f.status)
    if f.saga_type:
        clauses.append(f"saga_type IN ({', '.join('?' for _ in f.saga_type)})")
        params.extend(f.saga_type)
    if f.service:
        clauses.append("list_contains(services, ?)")
        params.append(f.service)
    if f.from_ns and f.to_ns and f.from_ns > f.to_ns:
        raise QueryError("from is later than to: the period would hold nothing")
    if f.from_ns:
        # A saga is in the range when it overlaps it.
        clauses.append("greatest(ended_ns, last_progress_ns) >= ?")
        params.append(f.from_ns)
    if f.to_ns:
        clauses.append("started_ns <= ?")
        params.append(f.to_ns)
    if f.finding_kind:
        if f.finding_kind not in FINDING_KINDS:
            raise QueryError(
                f"unknown finding kind {f.finding_kind!r}; expected one of {', '.join(FINDING_KINDS)}"
            )
        clauses.append(
            "saga_key IN (SELECT saga_key FROM findings WHERE kind = ? AND acknowledged_ns IS NULL)"
        )
        params.append(f.finding_kind)
    if f.q:
        clauses.append(
            "(contains(lower(saga_key), lower(?)) OR "
            "len(list_filter(business_keys, lambda k: contains(lower(k), lower(?)))) > 0)"
        )
        params.extend([f.q, f.q])
    if f.after:
        clauses.append("saga_key > ?")
        params.append(f.after)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def build_saga_list(f: SagaFilter) -> tuple[str, list[Any]]:
    if f.sort not in SAGA_SORTS:
        raise QueryError(f"unknown sort {f.sort!r}; expected one of {', '.join(SAGA_SORTS)}")
    if not 1 <= f.limit <= 1000:
        raise QueryError("limit must be between 1 and 1000")
    if f.offset < 0:
        raise QueryError("offset must not be negative")
    where, params = build_saga_where(f)
    order = f"{SAGA_SORTS[f.sort]} {'DESC' if f.descending else 'ASC'}, saga_key"
    sql = f"SELECT *, {OPEN_FINDING_COUNT} FROM sagas{where} ORDER BY {order} LIMIT ? OFFSET ?"
    order_params = [f.now_ns] if f.sort == "duration" else []
    return sql, [*params, *order_params, f.limit, f.offset]


# A step as readers see it: the saga's type is on the saga, and the step's successor is the
# analysis's bookkeeping.
STEP_COLUMNS = "* EXCLUDE (saga_type, next_step)"

JSON_COLUMNS = {
    "attributes",
    "resource_attributes",
    "scope_attributes",
    "events",
    "links",
    "body",
    "data",
    "extensions",
    "headers",
    "destination_details",
    "details",
}


def _rows(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    out = []
    for row in cur.fetchall():
        item = dict(zip(names, row, strict=True))
        for k in JSON_COLUMNS.intersection(item):
            if isinstance(item[k], str):
                item[k] = json.loads(item[k])
        item.pop("ingested_ns", None)
        out.append(item)
    return out


# How far the analysis has got: records stored after this (ingested_ns, id) mark wait for it
# (see collector/runner.py, which moves the mark).
Progress = tuple[int, str]


def load_progress(conn: duckdb.DuckDBPyConnection) -> Progress:
    row = conn.execute("SELECT ingested_ns, record FROM analysis_progress").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, "")


def analysis_status(
    conn: duckdb.DuckDBPyConnection, after: Progress | None = None
) -> dict[str, Any]:
    """Traces stored but not analysed yet, and how much ingest time they span.

    ``behind_s`` runs from the oldest waiting span's commit to the latest commit: 0 when
    the analysis has caught up, growing while ingest outruns it.
    """
    ns, record = load_progress(conn) if after is None else after
    row = conn.execute(
        "SELECT count(DISTINCT trace_id), min(ingested_ns) FROM spans "
        "WHERE ingested_ns > ? OR (ingested_ns = ? AND trace_id > ?)",
        [ns, ns, record],
    ).fetchone()
    waiting, oldest = (int(row[0]), row[1]) if row else (0, None)
    behind = (last_ingested_ns(conn) - int(oldest)) / 1e9 if waiting and oldest else 0.0
    status: dict[str, Any] = {"traces_waiting": waiting, "behind_s": behind}
    # While the store is analysed again (changed definitions, a new sagalens), the waiting
    # traces are old ones, and why they wait is the news.
    redo = conn.execute("SELECT reanalysis, reanalysis_until_ns FROM analysis_progress").fetchone()
    if redo and redo[0] and waiting and oldest is not None and int(oldest) < int(redo[1]):
        status["reanalysis"] = str(redo[0])
        status["behind_s"] = 0.0
    return status


class Reader:
    """Read-only queries over one connection."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def _all(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return _rows(self.conn.execute(sql, params or []))

    def _one(self, sql: str, params: list[Any] | None = None) -> Any:
        row = self.conn.execute(sql, params or []).fetchone()
        return row[0] if row else None

    # -- raw records ---------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM logs), "
            "(SELECT count(*) FROM events), (SELECT count(*) FROM rejections), "
            "(SELECT count(*) FROM sagas), (SELECT count(*) FROM findings "
            "WHERE acknowledged_ns IS NULL)"
        ).fetchone()
        assert row is not None
        keys = ("spans", "logs", "events", "rejections", "sagas", "open_findings")
        return dict(zip(keys, (int(v) for v in row), strict=True))

    def trace_spans(self, trace_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", [trace_id])

    def trace_logs(self, trace_id: str) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM logs WHERE trace_id = ? ORDER BY time_ns", [trace_id])

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._all("SELECT * FROM rejections ORDER BY received_ns DESC LIMIT ?", [limit])

    # -- sagas ---------------------------------------------------------------------------
    def list_sagas(self, f: SagaFilter) -> tuple[list[dict[str, Any]], int]:
        sql, params = build_saga_list(f)
        where, wparams = build_saga_where(f)
        total = int(self._one(f"SELECT count(*) FROM sagas{where}", wparams) or 0)
        return self._all(sql, params), total

    def iter_sagas(self, f: SagaFilter, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every matching saga with its steps and findings, in key order, a page at a time.

        Pages follow a key cursor, not an offset, so sagas stored meanwhile neither repeat
        nor push others out of the result.
        """
        cursor = replace(f, sort="key", descending=False, limit=page, offset=0)
        while True:
            rows = self._all(*build_saga_list(cursor))
            yield from self.with_details(rows)
            if len(rows) < page:
                return
            cursor = replace(cursor, after=rows[-1]["saga_key"])

    def with_details(self, sagas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The sagas, each given its steps and findings as :meth:`get_saga` gives them."""
        keys = [r["saga_key"] for r in sagas]
        steps = self._grouped(f"SELECT {STEP_COLUMNS} FROM steps", keys, "seq")
        findings = self._grouped("SELECT * FROM findings", keys, "detected_ns")
        for r in sagas:
            r["steps"] = steps.get(r["saga_key"], [])
            r["findings"] = findings.get(r["saga_key"], [])
        return sagas

    def _grouped(self, select: str, keys: list[str], order: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not keys:
            return out
        rows = self._all(
            f"{select} WHERE saga_key IN (SELECT unnest(?)) ORDER BY saga_key, {order}", [keys]
        )
        for r in rows:
            out.setdefault(r["saga_key"], []).append(r)
        return out

    def get_saga(self, key: str, *, records: bool = True) -> dict[str, Any] | None:
        rows = self._all(f"SELECT *, {OPEN_FINDING_COUNT} FROM sagas WHERE saga_key = ?", [key])
        if not rows:
            return None
        saga = self.with_details(rows)[0]
        if records:
            saga["spans"] = self._all(
                "SELECT * FROM spans WHERE trace_id IN "
                "(SELECT trace_id FROM saga_traces WHERE saga_key = ?) ORDER BY start_ns",
                [key],
            )
            saga["events"] = self._all(
                "SELECT * FROM events WHERE event_key IN "
                "(SELECT event_key FROM saga_events WHERE saga_key = ?) "
                "ORDER BY coalesce(nullif(time_ns, 0), received_ns)",
                [key],
            )
            saga["logs"] = self._all(
                "SELECT * FROM logs WHERE trace_id IN "
                "(SELECT trace_id FROM saga_traces WHERE saga_key = ?) ORDER BY time_ns",
                [key],
            )
        return saga

    def list_findings(
        self,
        kind: str = "",
        saga_key: str = "",
        include_acknowledged: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        clauses, params = [], []
        if kind:
            if kind not in FINDING_KINDS:
                raise QueryError(
                    f"unknown finding kind {kind!r}; expected one of {', '.join(FINDING_KINDS)}"
                )
            clauses.append("f.kind = ?")
            params.append(kind)
        if saga_key:
            clauses.append("f.saga_key = ?")
            params.append(saga_key)
        if not include_acknowledged:
            clauses.append("f.acknowledged_ns IS NULL")
        if not 1 <= limit <= 1000:
            raise QueryError("limit must be between 1 and 1000")
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        total = int(self._one(f"SELECT count(*) FROM findings f{where}", params) or 0)
        rows = self._all(
            "SELECT f.*, s.saga_type, s.status AS saga_status FROM findings f "
            f"LEFT JOIN sagas s USING (saga_key){where} "
            "ORDER BY f.detected_ns DESC, f.finding_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return rows, total

    # -- aggregates for the overview and flow pages ---------------------------------------
    def overview(self) -> dict[str, Any]:
        """Everything the overview page shows, in one answer."""
        return {
            "counts": self.counts(),
            "status": self.status_counts(),
            "throughput": self.throughput(),
            "durations": self.duration_percentiles(),
            "types": self.saga_types(),
            "services": self.services(),
            "event_sources": self.event_sources(),
            "analysis": analysis_status(self.conn),
            "period": self.period(),
        }

    def period(self) -> dict[str, int]:
        """When the stored sagas began and last progressed (0 and 0 for none)."""
        row = self.conn.execute(
            "SELECT min(started_ns), max(greatest(ended_ns, last_progress_ns, started_ns)) "
            "FROM sagas"
        ).fetchone()
        first, last = (row or (None, None))[:2]
        return {"from_ns": int(first or 0), "to_ns": int(last or 0)}

    def status_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM sagas GROUP BY status").fetchall()
        return {s: int(n) for s, n in rows}

    def saga_types(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute("SELECT DISTINCT saga_type FROM sagas ORDER BY 1").fetchall()
        ]

    def event_sources(self) -> list[str]:
        """Services known only as the CloudEvents source of events, never as a span's
        service.name: ``/shop/billing`` beside ``billing`` is not assumed to be one service."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT service FROM steps WHERE step_type = 'event' AND service <> '' "
                "EXCEPT SELECT service FROM steps WHERE step_type <> 'event' ORDER BY 1"
            ).fetchall()
        ]

    def services(self) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT unnest(services) FROM sagas ORDER BY 1"
            ).fetchall()
        ]

    def throughput(self, buckets: int = 48) -> list[dict[str, Any]]:
        """Sagas started and failed per time bucket over the stored period."""
        span = self.conn.execute("SELECT min(started_ns), max(started_ns) FROM sagas").fetchone()
        if not span or span[0] is None:
            return []
        lo, hi = int(span[0]), int(span[1])
        width = max((hi - lo) // buckets + 1, 1)
        return self._all(
            "SELECT ? + ((started_ns - ?) // ?) * ? AS bucket_ns, count(*) AS started, "
            "count(*) FILTER (WHERE status IN ('failed','compensated','compensation_missing',"
            "'compensation_failed')) AS failed FROM sagas GROUP BY 1 ORDER BY 1",
            [lo, lo, width, width],
        )

    def duration_percentiles(self) -> list[dict[str, Any]]:
        return self._all(
            "SELECT saga_type, count(*) AS sagas, "
            "quantile_cont(ended_ns - started_ns, 0.5) AS p50_ns, "
            "quantile_cont(ended_ns - started_ns, 0.95) AS p95_ns, "
            "quantile_cont(ended_ns - started_ns, 0.99) AS p99_ns "
            "FROM sagas WHERE ended_ns > 0 GROUP BY saga_type ORDER BY saga_type"
        )

    def flow(self, saga_type: str) -> dict[str, Any]:
        """Learned step graph of one saga type: nodes with stats, edges with counts.

        A node's ``compensation`` says it undid another step (events that compensate keep
        step type ``event``); ``median_ns`` is None for events, which are instants.
        """
        nodes = self._all(
            "SELECT s.name, s.step_type, count(*) AS count, "
            "count(*) FILTER (WHERE s.outcome = 'failed') AS failed, "
            "median(CASE WHEN s.end_ns > 0 AND s.step_type <> 'event' "
            "THEN s.end_ns - s.start_ns END) AS median_ns, "
            "coalesce(bool_or(s.step_type = 'compensation' OR s.compensates <> ''), false) "
            "AS compensation "
            "FROM steps s WHERE s.saga_type = ? GROUP BY 1, 2 ORDER BY min(s.seq), 1",
            [saga_type],
        )
        edges = self._all(
            "SELECT name AS source, next_step AS target, count(*) AS count FROM steps "
            "WHERE saga_type = ? AND next_step IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
            [saga_type],
        )
        total = int(self._one("SELECT count(*) FROM sagas WHERE saga_type = ?", [saga_type]) or 0)
        compensated = int(
            self._one(
                "SELECT count(*) FROM sagas WHERE saga_type = ? AND status = 'compensated'",
                [saga_type],
            )
            or 0
        )
        return {
            "saga_type": saga_type,
            "sagas": total,
            "compensated": compensated,
            "nodes": nodes,
            "edges": edges,
        }
