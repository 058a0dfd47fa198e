"""Golden and structural tests of the JSON Lines and CSV exports and their manifests."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.export import store_completeness
from dashboard.report import FORMATS, ReportError, export_report, manifest_path
from dashboard.report.chain import GENESIS, canonical, sha256_hex
from dashboard.report.records import CSV_COLUMNS, Chain, Totals, build_jsonl, report_records
from dashboard.report.redaction import RedactionRules
from tests.dashboard.reportdata import COMPLETENESS, META, export, sample_sagas

GOLDEN = Path(__file__).parents[1] / "data" / "report"
UPDATE = os.environ.get("SAGALENS_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize(("fmt", "golden"), [("json", "golden.jsonl"), ("csv", "golden.csv")])
def test_export_matches_golden_file(tmp_path: Path, fmt: str, golden: str) -> None:
    result = export(tmp_path, fmt)
    written = result.files[0].read_text(encoding="utf-8")
    if UPDATE:
        (GOLDEN / golden).write_text(written, encoding="utf-8")
    assert written == (GOLDEN / golden).read_text(encoding="utf-8")


def test_json_records_header_first_then_sagas_then_trailer(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = [json.loads(x) for x in result.files[0].read_text(encoding="utf-8").splitlines()]
    kinds = [x["kind"] for x in lines]
    assert kinds[0] == "header" and kinds[-1] == "trailer"
    assert set(kinds[1:-1]) == {"saga", "step", "finding"}
    assert [x["seq"] for x in lines] == list(range(len(lines)))
    header = lines[0]["data"]
    assert header["report"]["generated_by"] == "auditor"
    assert header["report"]["host"] == "audit-host"
    assert header["report"]["sagalens_version"] == "0.1.0"
    assert header["report"]["scope"]["from"] == "2026-01-01T00:00:00.000Z"
    assert header["report"]["scope"]["filters"] == {"type": "any"}
    assert header["completeness"]["unresolved_records"] == 3
    assert header["redaction"]["patterns"]["card"]
    totals = lines[-1]["data"]["totals"]
    assert totals["sagas"] == kinds.count("saga") == 30
    assert totals["steps"] == kinds.count("step")
    assert totals["findings"] == kinds.count("finding")
    assert result.record_count == len(lines)
    assert result.saga_count == 30


def test_json_chain_links_every_record(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    prev = GENESIS
    for line in result.files[0].read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        claimed = record.pop("hash")
        assert record["prev_hash"] == prev
        assert sha256_hex(canonical(record)) == claimed
        prev = claimed
    assert prev == result.data_digest


def test_steps_carry_audit_fields_and_iso_times(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    steps = [
        json.loads(x)["data"]
        for x in result.files[0].read_text(encoding="utf-8").splitlines()
        if '"kind":"step"' in x
    ]
    charge = next(s for s in steps if s["name"] == "charge_payment")
    for field in ("actor", "name", "step_type", "start", "end", "outcome", "origin", "resource"):
        assert field in charge
    assert charge["start"].endswith("Z") and charge["start"].startswith("2026-01-01T")
    assert charge["origin"] == "payments"
    assert charge["resource"].startswith("order.id=")
    compensations = [s for s in steps if s["step_type"] == "compensation"]
    assert compensations and all(s["compensates"] for s in compensations)


def test_csv_has_fixed_columns_and_one_row_per_record(tmp_path: Path) -> None:
    result = export(tmp_path, "csv")
    with result.files[0].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert rows[0]["kind"] == "header" and rows[-1]["kind"] == "trailer"
    assert len(rows) == result.record_count
    failed = [r for r in rows if r["kind"] == "step" and r["outcome"] == "failed"]
    assert failed and all(r["start"].endswith("Z") for r in failed)
    findings = [r for r in rows if r["kind"] == "finding"]
    assert all(r["explanation"] and r["evidence"] for r in findings)


def test_every_format_states_the_same_data_digest(tmp_path: Path) -> None:
    digests = {fmt: export(tmp_path, fmt).data_digest for fmt in FORMATS}
    assert len(set(digests.values())) == 1
    manifest = json.loads(manifest_path(tmp_path / "report.csv").read_text(encoding="utf-8"))
    assert manifest["data_digest"] == digests["json"]


def test_manifest_lists_file_digest_chain_head_and_metadata(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    assert result.manifest == tmp_path / "report.json.manifest.json"
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    (entry,) = manifest["files"]
    assert entry["name"] == "report.json"
    assert entry["sha256"] == sha256_hex(result.files[0].read_text(encoding="utf-8"))
    assert entry["chain_head"] == result.data_digest
    assert entry["records"] == result.record_count
    assert manifest["report"]["report"]["generated_by"] == "auditor"
    assert "signature" not in manifest


def test_builders_stream_one_saga_at_a_time() -> None:
    pulled = 0

    def counting():
        nonlocal pulled
        for saga in sample_sagas():
            pulled += 1
            yield saga

    lines = build_jsonl(
        report_records(counting(), META, COMPLETENESS, RedactionRules.defaults(), Totals()),
        Chain(),
    )
    next(lines)  # header
    next(lines)  # first saga
    assert pulled == 1


def test_unknown_format_and_directory_out_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="unknown report format"):
        export(tmp_path, "xml")
    with pytest.raises(ReportError, match="is a directory"):
        export_report(sample_sagas(), "json", tmp_path, META, COMPLETENESS, None, None)


def test_bad_signing_key_is_a_report_error(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key", encoding="utf-8")
    with pytest.raises(ReportError, match="PEM"):
        export(tmp_path, "json", sign_key=key)
    assert not (tmp_path / "report.json").exists()


def test_report_package_imports_without_streamlit() -> None:
    code = "import sys, dashboard.report; assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.mark.parametrize(
    ("rejections", "gaps"),
    [
        (0, ()),
        (1, ("1 item was rejected at ingest (see /api/v1/rejections)",)),
        (1200, ("1,200 items were rejected at ingest (see /api/v1/rejections)",)),
    ],
)
def test_store_completeness_names_what_was_refused(rejections: int, gaps: tuple[str, ...]) -> None:
    overview = {
        "counts": {"spans": 10, "rejections": rejections},
        "period": {"from_ns": 1_000, "to_ns": 2_000},
    }
    completeness = store_completeness(overview, "file store.duckdb")
    assert completeness.gaps == gaps
    assert (completeness.coverage_from_ns, completeness.coverage_to_ns) == (1_000, 2_000)
    assert completeness.record_counts == {"spans": 10, "rejections": rejections}
