"""Hash chain of sagalens' own actions, stored in the append-only ``audit_log`` table.

Each row's ``hash`` is the SHA-256 of the canonical JSON of ``{seq, at_ns, actor, action,
details, prev_hash}``; sequence numbers start at ``FIRST_SEQ`` (1) and the first row's
``prev_hash`` is ``GENESIS``. Writing the rows is the
store's job; this module only computes and checks them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .chain import GENESIS, ChainRecord, VerifyReport, canonical, sha256_hex, verify_chain

FIRST_SEQ = 1


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


def verify_audit_log(rows: Iterable[Mapping[str, Any]]) -> VerifyReport:
    """Check an audit log read in ``seq`` order or storage order.

    ``details`` may be a dict or its JSON text (as DuckDB returns JSON columns).
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
                    f"audit log entry {row.get('seq')}: details are not valid JSON"
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
    result = verify_chain(records, where="audit log", first=FIRST_SEQ)
    report.merge(result)
    return report
