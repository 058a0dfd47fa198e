"""Hash chain of sagalens' own actions, stored in the append-only ``audit_log`` table.

Each row's ``hash`` is the SHA-256 of the canonical JSON of ``{seq, at_ns, actor, action,
details, prev_hash}``; sequence numbers start at ``FIRST_SEQ`` (1) and the first row's
``prev_hash`` is ``GENESIS``. Writing the rows is the
store's job; this module only computes and checks them.

The export format (``audit-log``) is JSON Lines: one row per line exactly as stored, with the
columns ``AUDIT_COLUMNS`` in that order and ``details`` as a JSON object, in ``seq`` order.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .chain import GENESIS, ChainRecord, VerifyReport, canonical, sha256_hex, verify_chain

FIRST_SEQ = 1
AUDIT_LOG_FORMAT = "audit-log"
AUDIT_COLUMNS = ("seq", "at_ns", "actor", "action", "details", "prev_hash", "hash")


def _entry_hash(
    prev_hash: str, seq: int, at_ns: int, actor: str, action: str, details: Mapping[str, Any]
) -> str:
    content = {
        "seq": seq,
        "at_ns": at_ns,
        "actor": actor,
        "action": action,
        "details": details,
        "prev_hash": prev_hash,
    }
    return sha256_hex(canonical(content))


def chain_entry(
    prev_hash: str | None,
    seq: int,
    at_ns: int,
    actor: str,
    action: str,
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``audit_log`` row for an action; pass ``prev_hash=None`` for the first row (seq 1)."""
    prev = GENESIS if prev_hash is None else prev_hash
    return {
        "seq": seq,
        "at_ns": at_ns,
        "actor": actor,
        "action": action,
        "details": dict(details),
        "prev_hash": prev,
        "hash": _entry_hash(prev, seq, at_ns, actor, action, details),
    }


def details_object(details: Any) -> Any:
    """Stored ``details`` (JSON text, as DuckDB returns it) as an object.

    Text that is not valid JSON stays text, so that verification names the entry.
    """
    if isinstance(details, str):
        with contextlib.suppress(ValueError):
            return json.loads(details)
    return details


def audit_log_line(row: Mapping[str, Any]) -> str:
    """The export line of one row (newline-terminated); ``details`` JSON text becomes an object."""
    details = details_object(row.get("details"))
    values = {name: row.get(name) for name in AUDIT_COLUMNS}
    values["details"] = {} if details is None else details
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n"


def verify_audit_log(
    rows: Iterable[Mapping[str, Any]],
    *,
    where: str = "audit log",
    expected_count: int | None = None,
    expected_head: str | None = None,
) -> VerifyReport:
    """Check an audit log read in ``seq`` order or storage order, from its first entry.

    ``details`` may be a dict or its JSON text (as DuckDB returns JSON columns).
    ``expected_count`` and ``expected_head`` are what a manifest says the log holds.
    """
    records: list[ChainRecord] = []
    report = VerifyReport()
    for row in rows:
        details = row.get("details") or {}
        if isinstance(details, str):
            try:
                details = json.loads(details)
            except ValueError:
                report.problems.append(
                    f"{where}: record {row.get('seq')}: details are not valid JSON"
                )
                continue
        seq = int(row["seq"])
        actual = _entry_hash(
            str(row.get("prev_hash", "")),
            seq,
            int(row.get("at_ns") or 0),
            str(row.get("actor", "")),
            str(row.get("action", "")),
            details,
        )
        records.append(
            ChainRecord(
                seq,
                str(row.get("hash", "")),
                str(row.get("prev_hash", "")),
                actual == str(row.get("hash", "")),
                f" ({row.get('action', '')} by {row.get('actor', '')})",
            )
        )
    result = verify_chain(
        records,
        expected_count=expected_count,
        expected_head=expected_head,
        where=where,
        first=FIRST_SEQ,
    )
    report.merge(result)
    return report
