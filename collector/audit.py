"""Append-only, hash-chained log of sagalens' own actions (exports, config, acknowledgements)."""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb

from collector.store.columns import to_json
from dashboard.report.audit_log import (
    AUDIT_COLUMNS,
    chain_entry,
    details_object,
    verify_audit_log,
)
from dashboard.report.meta import iso_ns

ACTION = re.compile(r"[a-z]+(\.[a-z_]+)+")


class AuditError(ValueError):
    """A malformed audit entry request."""


class AuditConflict(AuditError):
    """A request for what is already done and recorded, such as a second acknowledgement."""


def check_plain_json(value: Any) -> None:
    """Refuse what would not hash as it is stored: NaN, Infinity, unpaired surrogates."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError is one
        raise AuditError(
            "an audit entry must be plain JSON text: no NaN, no Infinity and no unpaired "
            f"surrogate characters ({exc})"
        ) from None


def append_audit(
    conn: duckdb.DuckDBPyConnection, at_ns: int, actor: str, action: str, details: dict[str, Any]
) -> dict[str, Any]:
    """Append one chained entry; run inside the writer's transaction so seq stays gap-free."""
    if not ACTION.fullmatch(action):
        raise AuditError(f"action must look like 'area.verb', got {action!r}")
    check_plain_json({"actor": actor, "details": details})
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, None)
    entry = chain_entry(prev, seq, at_ns, actor, action, details)
    conn.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            entry["seq"],
            entry["at_ns"],
            entry["actor"],
            entry["action"],
            to_json(entry["details"]),
            entry["prev_hash"],
            entry["hash"],
        ],
    )
    return entry


def acknowledge_finding(
    conn: duckdb.DuckDBPyConnection, at_ns: int, finding_id: str, actor: str, note: str
) -> dict[str, Any] | None:
    """Mark a finding acknowledged and record who did it; None when there is no such finding."""
    row = conn.execute(
        "SELECT saga_key, kind, step, acknowledged_ns, acknowledged_by FROM findings "
        "WHERE finding_id = ?",
        [finding_id],
    ).fetchone()
    if row is None:
        return None
    if row[3] is not None:
        # The first acknowledgement stands: who took it on, and when, is the record.
        raise AuditConflict(
            f"finding {finding_id!r} was already acknowledged by {row[4]!r} at {iso_ns(row[3])}"
        )
    conn.execute(
        "UPDATE findings SET acknowledged_ns = ?, acknowledged_by = ? WHERE finding_id = ?",
        [at_ns, actor, finding_id],
    )
    return append_audit(
        conn,
        at_ns,
        actor,
        "finding.acknowledged",
        {
            "finding_id": finding_id,
            "saga_key": row[0],
            "kind": row[1],
            "step": row[2],
            "note": note,
        },
    )


def read_audit_log(conn: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """The whole log in ``seq`` order and whether its chain verifies (``GET /api/v1/audit``).

    ``details`` come back as objects; text that is not valid JSON is left as text, so that
    the verification names the entry instead of the read failing.
    """
    cur = conn.execute(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY seq")
    entries = []
    for values in cur.fetchall():
        row = dict(zip(AUDIT_COLUMNS, values, strict=True))
        row["details"] = details_object(row["details"])
        entries.append(row)
    report = verify_audit_log(entries)
    return {"entries": entries, "verified": report.ok, "problems": report.problems}
