"""The hash chain of sagalens' own actions (the audit_log table)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dashboard.report import chain_entry, verify_audit_log
from dashboard.report.chain import GENESIS, canonical, sha256_hex

T = 1_767_225_600_000_000_000


def _log(n: int = 5) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    prev = None
    for seq in range(1, n + 1):
        row = chain_entry(prev, seq, T + seq, "alice", "report.export", {"format": "pdf", "n": seq})
        rows.append(row)
        prev = row["hash"]
    return rows


def test_chain_entry_hashes_its_content_and_links_to_prev() -> None:
    first = chain_entry(None, 1, T, "alice", "report.export", {"format": "pdf"})
    assert first["prev_hash"] == GENESIS
    content = {k: v for k, v in first.items() if k != "hash"}
    assert first["hash"] == sha256_hex(canonical(content))
    second = chain_entry(first["hash"], 2, T + 1, "bob", "finding.ack", {"finding": "f-1"})
    assert second["prev_hash"] == first["hash"]
    assert set(first) == {"seq", "at_ns", "actor", "action", "details", "prev_hash", "hash"}


def test_chain_entry_is_deterministic() -> None:
    a = chain_entry(None, 1, T, "alice", "x", {"b": 1, "a": 2})
    b = chain_entry(None, 1, T, "alice", "x", {"a": 2, "b": 1})
    assert a["hash"] == b["hash"]


def test_intact_log_verifies_with_dict_or_json_details() -> None:
    rows = _log()
    assert verify_audit_log(rows).ok
    as_stored = [{**r, "details": json.dumps(r["details"])} for r in rows]
    assert verify_audit_log(as_stored).ok
    assert verify_audit_log([]).ok


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (
            lambda rows: rows[2]["details"].update(format="csv"),
            "audit log: record 3 (report.export by alice) was altered: content hash mismatch",
        ),
        (lambda rows: rows.pop(2), "audit log: record 3 is missing (chain break between 2 and 4)"),
        (lambda rows: rows.insert(1, rows.pop(2)), "audit log: records 2 and 3 are out of order"),
        (
            lambda rows: rows.pop(0),
            "audit log: record 1 is missing (chain starts at 2)",
        ),
        (
            lambda rows: rows.__setitem__(
                1, chain_entry(rows[0]["hash"], 2, T, "mallory", "report.export", {})
            ),
            "audit log: chain break between records 2 and 3: record 2 (report.export by mallory) "
            "was replaced or rewritten with a recomputed hash",
        ),
    ],
)
def test_tampering_is_located(tamper: Any, expected: str) -> None:
    rows = _log()
    tamper(rows)
    report = verify_audit_log(rows)
    assert expected in report.problems, report.problems


def test_unparseable_details_are_reported() -> None:
    rows = _log(2)
    rows[1]["details"] = "{not json"
    assert not verify_audit_log(rows).ok
