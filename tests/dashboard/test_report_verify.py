"""verify() tells exactly what was altered, removed, reordered, swapped or badly signed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from dashboard.report import VerifyError, verify
from dashboard.report.chain import canonical, sha256_hex
from tests.dashboard.reportdata import export, sample_sagas, write_key_pair


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _first_step(lines: list[str]) -> tuple[int, dict]:
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record["kind"] == "step" and record["data"]["name"] == "charge_payment":
            return i, record
    raise AssertionError("sample has no charge_payment step")


@pytest.mark.parametrize("fmt", ["json", "csv", "ocel", "pdf"])
def test_untouched_export_verifies(tmp_path: Path, fmt: str) -> None:
    result = export(tmp_path, fmt)
    report = verify(result.files[0])
    assert report.ok, report.summary()
    assert report.summary().startswith("VERIFIED")
    assert verify(result.manifest).ok


def test_changed_value_names_the_record(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = _lines(result.files[0])
    i, record = _first_step(lines)
    lines[i] = lines[i].replace('"outcome":"ok"', '"outcome":"failed"')
    result.files[0].write_text("".join(lines), encoding="utf-8")
    report = verify(result.files[0])
    assert not report.ok
    key = record["data"]["saga_key"]
    assert (
        f"report.json: record {record['seq']} (saga {key} step charge_payment) was altered: "
        "content hash mismatch" in report.problems
    )
    assert "file report.json digest does not match manifest (swapped or edited)" in report.problems


def test_altered_record_with_recomputed_hash_breaks_the_link(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = _lines(result.files[0])
    i, record = _first_step(lines)
    record["data"]["actor"] = "mallory"
    del record["hash"]
    record["hash"] = sha256_hex(canonical(record))
    lines[i] = json.dumps(record) + "\n"
    result.files[0].write_text("".join(lines), encoding="utf-8")
    problems = verify(result.files[0]).problems
    seq = record["seq"]
    assert any(
        p.startswith(f"report.json: chain break between records {seq} and {seq + 1}: record {seq}")
        for p in problems
    ), problems


def test_deleted_record_is_reported_missing(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = _lines(result.files[0])
    del lines[18]
    result.files[0].write_text("".join(lines), encoding="utf-8")
    problems = verify(result.files[0]).problems
    assert "report.json: record 18 is missing (chain break between 17 and 19)" in problems
    assert not any("altered" in p for p in problems)


def test_truncated_file_is_reported(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = _lines(result.files[0])
    last = len(lines) - 1
    result.files[0].write_text("".join(lines[:-1]), encoding="utf-8")
    problems = verify(result.files[0]).problems
    assert (
        f"report.json: record {last} is missing (file truncated after record {last - 1})"
        in problems
    )


def test_reordered_records_are_reported(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    lines = _lines(result.files[0])
    lines[5], lines[6] = lines[6], lines[5]
    result.files[0].write_text("".join(lines), encoding="utf-8")
    problems = verify(result.files[0]).problems
    assert "report.json: records 5 and 6 are out of order" in problems
    assert not any("altered" in p or "missing" in p for p in problems)


def test_csv_tampering_is_located(tmp_path: Path) -> None:
    result = export(tmp_path, "csv")
    rows = list(csv.reader(io.StringIO(result.files[0].read_text(encoding="utf-8"))))
    target = next(r for r in rows[1:] if r[1] == "step" and r[6] == "charge_payment")
    target[11] = "failed" if target[11] == "ok" else "ok"
    del rows[10]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    result.files[0].write_text(buf.getvalue(), encoding="utf-8")
    problems = verify(result.files[0]).problems
    assert (
        f"report.csv: record {target[0]} (saga {target[2]} step charge_payment) was altered: "
        "content hash mismatch" in problems
    )
    assert "report.csv: record 9 is missing (chain break between 8 and 10)" in problems


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf", "ocel"])
def test_swapped_file_is_reported(tmp_path: Path, fmt: str) -> None:
    result = export(tmp_path, fmt)
    other = export(tmp_path / "other", fmt, sagas=sample_sagas(seed=99))
    result.files[0].write_bytes(other.files[0].read_bytes())
    problems = verify(result.files[0]).problems
    assert f"file report.{fmt} digest does not match manifest (swapped or edited)" in problems
    if fmt in ("json", "csv"):
        assert f"report.{fmt}: chain head does not match the manifest" in problems


def test_signed_export_verifies_with_trusted_key(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path / "signer")
    result = export(tmp_path, "json", sign_key=private)
    assert result.signed
    report = verify(result.files[0], pubkey=public)
    assert report.ok, report.summary()
    assert any("Ed25519 signature" in c for c in report.checked)


def test_edited_signed_manifest_has_invalid_signature(tmp_path: Path) -> None:
    private, _ = write_key_pair(tmp_path / "signer")
    result = export(tmp_path, "json", sign_key=private)
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    manifest["report"]["report"]["generated_by"] = "someone-else"
    result.manifest.write_text(json.dumps(manifest), encoding="utf-8")
    problems = verify(result.files[0]).problems
    assert "signature invalid: manifest was altered after signing" in problems


def test_signature_by_untrusted_key_is_invalid(tmp_path: Path) -> None:
    private, _ = write_key_pair(tmp_path / "signer")
    _, other_public = write_key_pair(tmp_path / "other")
    result = export(tmp_path, "json", sign_key=private)
    problems = verify(result.files[0], pubkey=other_public).problems
    assert "signature invalid: signed with a key other than the trusted key" in problems


def test_unsigned_manifest_with_trusted_key_fails(tmp_path: Path) -> None:
    _, public = write_key_pair(tmp_path / "signer")
    result = export(tmp_path, "json")
    assert not verify(result.files[0], pubkey=public).ok
    assert verify(result.files[0]).warnings


def test_missing_manifest_is_a_verify_error(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    result.manifest.unlink()
    with pytest.raises(VerifyError, match="no manifest"):
        verify(result.files[0])


def test_missing_file_is_reported(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf")
    result.files[0].unlink()
    assert verify(result.manifest).problems == ["file report.pdf is missing"]


def test_manifest_entries_cannot_point_outside_the_report_folder(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    manifest["files"][0]["name"] = "../report.json"
    result.manifest.write_text(json.dumps(manifest), encoding="utf-8")
    assert verify(result.manifest).problems == [
        "manifest lists '../report.json', which is not a file next to it"
    ]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([], "the manifest lists no files, so nothing was checked"),
        (None, "the manifest's 'files' is not a list of file entries"),
        ("report.json", "the manifest's 'files' is not a list of file entries"),
    ],
)
def test_a_manifest_that_checks_no_file_does_not_verify(
    tmp_path: Path, files: object, problem: str
) -> None:
    result = export(tmp_path, "json")
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    manifest["files"] = files
    result.manifest.write_text(json.dumps(manifest), encoding="utf-8")
    report = verify(result.manifest)
    assert not report.ok and problem in report.problems


def test_a_file_its_manifest_does_not_list_does_not_verify(tmp_path: Path) -> None:
    result = export(tmp_path, "json")
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    manifest["files"][0]["name"] = "other.json"
    result.manifest.write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "other.json").write_bytes(result.files[0].read_bytes())
    report = verify(result.files[0])
    assert not report.ok
    assert report.problems == ["the manifest does not list report.json: it vouches for nothing"]
