"""The hash chain of sagalens' own actions (the audit_log table), its export and verification."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from collector.client import DbSource
from dashboard.report import (
    ExportResult,
    chain_entry,
    export_audit_log,
    verify,
    verify_audit_log,
)
from dashboard.report.audit_log import AUDIT_COLUMNS
from dashboard.report.chain import GENESIS, canonical, sha256_hex
from tests.dashboard.reportdata import (
    AUDIT_ENTRIES,
    AUDIT_META,
    audit_store,
    write_key_pair,
)

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


# -- export of a real store ---------------------------------------------------------------------


def _stored(db: Path) -> dict[str, Any]:
    source = DbSource(str(db))
    try:
        return source.audit_log()
    finally:
        source.conn.close()


def _export(tmp_path: Path, db: Path, sign_key: Path | None = None) -> ExportResult:
    return export_audit_log(
        _stored(db)["entries"], tmp_path / "out" / "audit.jsonl", AUDIT_META, sign_key
    )


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return audit_store(tmp_path / "store.duckdb")


def test_export_holds_every_row_as_stored_and_verifies(tmp_path: Path, store: Path) -> None:
    conn = duckdb.connect(str(store), read_only=True)
    stored = conn.execute(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log ORDER BY seq"
    ).fetchall()
    conn.close()
    result = _export(tmp_path, store)
    out = result.files[0]
    rows = [json.loads(line) for line in _lines(out)]
    assert [list(r) for r in rows] == [list(AUDIT_COLUMNS)] * len(AUDIT_ENTRIES)
    assert rows == [
        {**dict(zip(AUDIT_COLUMNS, row, strict=True)), "details": json.loads(row[4])}
        for row in stored
    ]
    assert [r["action"] for r in rows] == [e[1] for e in AUDIT_ENTRIES]
    assert "paged the payments team — ünïcødé" in out.read_text(encoding="utf-8")

    manifest = json.loads(result.manifest.read_text())
    assert manifest["format"] == "sagalens-report-manifest/1"
    assert manifest["report"]["report"]["generated_by"] == "auditor"
    assert manifest["report"]["report"]["title"] == "sagalens audit log"
    assert manifest["files"] == [
        {
            "name": "audit.jsonl",
            "format": "audit-log",
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "bytes": out.stat().st_size,
            "records": 5,
            "chain_head": rows[-1]["hash"],
        }
    ]
    assert (result.record_count, result.data_digest, result.signed) == (5, rows[-1]["hash"], False)
    report = verify(out)
    assert report.ok, report.summary()
    assert "audit.jsonl: hash chain of 5 record(s)" in report.checked
    assert verify(result.manifest).ok


def test_empty_log_exports_and_verifies(tmp_path: Path) -> None:
    result = _export(tmp_path, audit_store(tmp_path / "empty.duckdb", ()))
    assert result.files[0].read_bytes() == b""
    assert (result.record_count, result.data_digest) == (0, GENESIS)
    assert verify(result.files[0]).ok


def _rewrite_third(lines: list[str]) -> list[str]:
    """Record 3 changed and re-hashed so that it is consistent on its own."""
    row = json.loads(lines[2])
    forged = chain_entry(
        row["prev_hash"],
        3,
        row["at_ns"],
        row["actor"],
        row["action"],
        {**row["details"], "sagas": 0},
    )
    return [*lines[:2], json.dumps(forged) + "\n", *lines[3:]]


def _append_one(lines: list[str]) -> list[str]:
    last = json.loads(lines[-1])
    extra = chain_entry(last["hash"], 6, last["at_ns"] + 1, "mallory", "report.exported", {})
    return [*lines, json.dumps(extra) + "\n"]


TAMPERING: list[tuple[str, Callable[[list[str]], list[str]], list[str], tuple[str, ...]]] = [
    (
        "changed value",
        lambda lines: [lines[0], lines[1].replace("paged the", "ignored the"), *lines[2:]],
        [
            "audit.jsonl: record 2 (finding.acknowledged by alice) was altered: content hash mismatch"
        ],
        ("missing", "out of order"),
    ),
    (
        "deleted entry",
        lambda lines: [*lines[:2], *lines[3:]],
        ["audit.jsonl: record 3 is missing (chain break between 2 and 4)"],
        ("altered", "out of order"),
    ),
    (
        "reordered entries",
        lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
        ["audit.jsonl: records 2 and 3 are out of order"],
        ("altered", "missing"),
    ),
    (
        "truncated",
        lambda lines: lines[:-1],
        ["audit.jsonl: record 5 is missing (file truncated after record 4)"],
        ("altered",),
    ),
    (
        "genesis removed",
        lambda lines: lines[1:],
        ["audit.jsonl: record 1 is missing (chain starts at 2)"],
        ("altered",),
    ),
    (
        "rewritten with a recomputed hash",
        _rewrite_third,
        [
            "audit.jsonl: chain break between records 3 and 4: record 3 (report.exported by bob) "
            "was replaced or rewritten with a recomputed hash"
        ],
        ("missing",),
    ),
    (
        "corrupted line",
        lambda lines: [*lines[:3], "{not json\n", *lines[4:]],
        [
            "audit.jsonl: line 4 is not a valid record (edited or corrupted)",
            "audit.jsonl: record 4 is missing (chain break between 3 and 5)",
        ],
        ("altered",),
    ),
    (
        "appended entry",
        _append_one,
        [
            "audit.jsonl: 1 record(s) more than the manifest lists (appended)",
            "audit.jsonl: chain head does not match the manifest",
        ],
        ("altered", "missing"),
    ),
]


@pytest.mark.parametrize(
    ("tamper", "expected", "absent"),
    [case[1:] for case in TAMPERING],
    ids=[case[0] for case in TAMPERING],
)
def test_tampered_export_names_the_problem(
    tmp_path: Path,
    store: Path,
    tamper: Callable[[list[str]], list[str]],
    expected: list[str],
    absent: tuple[str, ...],
) -> None:
    out = _export(tmp_path, store).files[0]
    out.write_text("".join(tamper(_lines(out))), encoding="utf-8")
    report = verify(out)
    assert not report.ok
    for problem in [
        "file audit.jsonl digest does not match manifest (swapped or edited)",
        *expected,
    ]:
        assert problem in report.problems, report.summary()
    assert not any(word in p for p in report.problems for word in absent), report.summary()


def test_swapped_file_is_reported(tmp_path: Path, store: Path) -> None:
    out = _export(tmp_path, store).files[0]
    # Another log that is intact on its own and just as long: only the manifest can tell.
    other = audit_store(tmp_path / "other.duckdb", [(a.upper(), x, d) for a, x, d in AUDIT_ENTRIES])
    out.write_bytes(_export(tmp_path / "other", other).files[0].read_bytes())
    assert verify(out).problems == [
        "file audit.jsonl digest does not match manifest (swapped or edited)",
        "audit.jsonl: chain head does not match the manifest",
    ]


def test_signed_export_verifies_only_with_the_signers_key(tmp_path: Path, store: Path) -> None:
    private, public = write_key_pair(tmp_path / "signer")
    _, other_public = write_key_pair(tmp_path / "other")
    result = _export(tmp_path, store, sign_key=private)
    assert result.signed
    report = verify(result.files[0], pubkey=public)
    assert report.ok, report.summary()
    assert "Ed25519 signature of the manifest with the trusted key" in report.checked
    wrong = verify(result.files[0], pubkey=other_public)
    assert "signature invalid: signed with a key other than the trusted key" in wrong.problems
    manifest = json.loads(result.manifest.read_text())
    manifest["files"][0]["records"] = 4
    result.manifest.write_text(json.dumps(manifest))
    edited = verify(result.files[0], pubkey=public)
    assert "signature invalid: manifest was altered after signing" in edited.problems


def test_a_store_altered_in_place_exports_as_is_and_fails_verification(
    tmp_path: Path, store: Path
) -> None:
    conn = duckdb.connect(str(store))
    conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    conn.close()
    stored = _stored(store)
    assert stored["verified"] is False
    assert stored["problems"] == [
        "audit log: record 2 (finding.acknowledged by mallory) was altered: content hash mismatch"
    ]
    report = verify(_export(tmp_path, store).files[0])
    assert report.problems == [
        "audit.jsonl: record 2 (finding.acknowledged by mallory) was altered: content hash mismatch"
    ]
