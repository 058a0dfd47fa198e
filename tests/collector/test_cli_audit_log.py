"""`sagalens report --format audit-log` against a running collector and a DuckDB file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner

from collector.cli import main
from tests.conftest import running_collector
from tests.dashboard.reportdata import audit_store, write_key_pair

TOKEN = "s3cret"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_through_the_collector_is_recorded_then_verifies_offline(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path / "signer")
    _, other_public = write_key_pair(tmp_path / "other")
    out = tmp_path / "export" / "audit.jsonl"
    with running_collector(tmp_path, token=TOKEN) as c:
        for i in range(3):
            r = httpx.post(
                c.url + "/api/v1/audit",
                json={"actor": "alice", "action": "config.changed", "details": {"n": i, "é": "ü"}},
                headers=c.headers(),
            )
            assert r.status_code == 200, r.text
        before = c.get("/api/v1/audit")["entries"]
        assert [e["action"] for e in before] == ["config.loaded", *["config.changed"] * 3]

        refused = _cli("report", "--collector", c.url, "--format", "audit-log", "--out", str(out))
        assert refused.returncode == 1 and "collector answered 401" in refused.stderr
        assert not out.exists()

        done = _cli(
            "report",
            "--collector",
            c.url,
            "--token",
            TOKEN,
            "--format",
            "audit-log",
            "--out",
            str(out),
            "--sign-key",
            str(private),
        )
        assert done.returncode == 0, done.stderr
        assert f"4 entries, chain head {before[-1]['hash']}, signed" in done.stdout
        assert _rows(out) == before

        after = c.get("/api/v1/audit")
        assert after["verified"] is True
        assert after["entries"][:4] == before
        assert after["entries"][4]["action"] == "report.exported"
        assert after["entries"][4]["details"] == {
            "format": "audit-log",
            "out": str(out),
            "data_digest": before[-1]["hash"],
            "entries": 4,
            "signed": True,
            "host": socket.gethostname(),
        }

    trusted = _cli("verify", str(out), "--pubkey", str(public))
    assert trusted.returncode == 0, trusted.stdout
    assert trusted.stdout.startswith("VERIFIED")
    untrusted = _cli("verify", str(out), "--pubkey", str(other_public))
    assert untrusted.returncode == 1
    assert "signature invalid: signed with a key other than the trusted key" in untrusted.stdout

    # With the collector stopped, the file itself can be exported read-only.
    offline = tmp_path / "offline.jsonl"
    done = _cli("report", "--db", str(c.db), "--format", "audit-log", "--out", str(offline))
    assert done.returncode == 0, done.stderr
    assert "note: not recorded in the audit log (the store was opened read-only)" in done.stdout
    assert _rows(offline) == after["entries"]
    assert _cli("verify", str(offline)).returncode == 0


def test_export_of_an_altered_store_warns_and_fails_verification(tmp_path: Path) -> None:
    store = audit_store(tmp_path / "store.duckdb")
    conn = duckdb.connect(str(store))
    conn.execute("""UPDATE audit_log SET details = '{"format": "csv"}' WHERE seq = 3""")
    conn.close()
    out = tmp_path / "audit.jsonl"
    done = _cli("report", "--db", str(store), "--format", "audit-log", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "warning: the audit log as stored does not verify" in done.stderr
    problem = "record 3 (report.exported by bob) was altered: content hash mismatch"
    assert f"audit log: {problem}" in done.stderr
    checked = _cli("verify", str(out))
    assert checked.returncode == 1
    assert checked.stdout.startswith("FAILED: 1 problem(s)")
    assert f"audit.jsonl: {problem}" in checked.stdout


@pytest.mark.parametrize(
    "flags",
    [
        ["--from", "2026-01-01T00:00:00Z"],
        ["--to", "2026-02-01T00:00:00Z"],
        ["--saga", "order-1004"],
        ["--status", "stalled", "--type", "OrderSaga"],
    ],
)
def test_audit_log_export_refuses_a_scope(tmp_path: Path, flags: list[str]) -> None:
    store = audit_store(tmp_path / "store.duckdb")
    out = tmp_path / "audit.jsonl"
    result = CliRunner().invoke(
        main, ["report", "--db", str(store), "--format", "audit-log", "--out", str(out), *flags]
    )
    assert result.exit_code == 2
    named = ", ".join(f for f in flags if f.startswith("--"))
    assert f"{named} cannot be used with --format audit-log" in result.output
    assert not out.exists()


def test_a_report_period_that_ends_before_it_starts_is_refused(tmp_path: Path) -> None:
    store = audit_store(tmp_path / "store.duckdb")
    out = tmp_path / "r.json"
    period = ["--from", "2026-01-02", "--to", "2026-01-01"]
    result = CliRunner().invoke(
        main, ["report", "--db", str(store), "--format", "json", "--out", str(out), *period]
    )
    assert result.exit_code == 2
    assert "--from is later than --to" in result.output
    assert not out.exists()
