"""Verification of an export (report or audit log): signature, file digests and hash chains."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .audit_log import AUDIT_LOG_FORMAT, verify_audit_log
from .chain import (
    ChainRecord,
    VerifyReport,
    canonical,
    parse_chain,
    record_content,
    sha256_hex,
    verify_chain,
)
from .errors import ReportError, VerifyError
from .manifest import MANIFEST_FORMAT, MANIFEST_SUFFIX, check_signature, load_public_key
from .records import CSV_COLUMNS, CSV_DATA_COLUMNS, record_label


def _manifest_for(path: Path) -> Path:
    if path.name.endswith(MANIFEST_SUFFIX):
        return path
    return path.with_name(path.name + MANIFEST_SUFFIX)


def verify(path: Path, pubkey: Path | None = None) -> VerifyReport:
    """Verify the export at ``path`` (the report file or its manifest).

    Raises ``VerifyError`` only when there is nothing to check against (no readable manifest).
    """
    mpath = _manifest_for(Path(path))
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise VerifyError(f"no manifest found at {mpath}") from exc
    except (OSError, ValueError) as exc:
        raise VerifyError(f"manifest {mpath} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise VerifyError(f"{mpath} is not a sagalens report manifest")
    trusted = None
    if pubkey is not None:
        try:
            trusted = load_public_key(Path(pubkey).read_bytes())
        except (OSError, ReportError) as exc:
            raise VerifyError(f"cannot use trusted public key {pubkey}: {exc}") from exc
    report = check_signature(manifest, trusted)
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(e, dict) for e in files):
        report.problems.append("the manifest's 'files' is not a list of file entries")
        return report
    if not files:
        report.problems.append("the manifest lists no files, so nothing was checked")
    names = {str(e.get("name", "")) for e in files}
    given = Path(path)
    if given != mpath and given.name not in names:
        report.problems.append(f"the manifest does not list {given.name}: it vouches for nothing")
    for entry in files:
        report.merge(_verify_file(mpath.parent, entry))
    return report


def _verify_file(folder: Path, entry: Mapping[str, Any]) -> VerifyReport:
    report = VerifyReport()
    name = str(entry.get("name", ""))
    if not name or Path(name).name != name or name in (".", ".."):
        # Files always sit next to their manifest; anything else is a forged entry.
        report.problems.append(f"manifest lists {name!r}, which is not a file next to it")
        return report
    fpath = folder / name
    if not fpath.is_file():
        report.problems.append(f"file {name} is missing")
        return report
    sha = hashlib.sha256()
    with fpath.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    if sha.hexdigest() != entry.get("sha256"):
        report.problems.append(f"file {name} digest does not match manifest (swapped or edited)")
    else:
        report.checked.append(f"file {name} SHA-256 digest")
    fmt = entry.get("format")
    if fmt in ("json", "csv"):
        records, parse_report = (_read_jsonl if fmt == "json" else _read_csv)(fpath, name)
        report.merge(parse_report)
        report.merge(
            verify_chain(
                records,
                expected_count=entry.get("records"),
                expected_head=entry.get("chain_head"),
                where=name,
            )
        )
    elif fmt == AUDIT_LOG_FORMAT:
        rows, parse_report = _read_audit_log(fpath, name)
        report.merge(parse_report)
        report.merge(
            verify_audit_log(
                rows,
                where=name,
                expected_count=entry.get("records"),
                expected_head=entry.get("chain_head"),
            )
        )
    return report


def _jsonl_items(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                yield line_no, None
                continue
            yield line_no, obj if isinstance(obj, dict) else None


def _read_jsonl(path: Path, name: str) -> tuple[list[ChainRecord], VerifyReport]:
    return parse_chain(
        _jsonl_items(path),
        lambda obj: record_label(str(obj.get("kind", "")), obj.get("data") or {}),
        where=name,
    )


def _read_audit_log(path: Path, name: str) -> tuple[list[Mapping[str, Any]], VerifyReport]:
    """The rows of an audit log export; lines that cannot be a row are reported, not checked."""
    report = VerifyReport()
    rows: list[Mapping[str, Any]] = []
    for line_no, obj in _jsonl_items(path):
        if (
            obj is None
            or not isinstance(obj.get("seq"), int)
            or not isinstance(obj.get("at_ns"), int)
            or not isinstance(obj.get("hash"), str)
        ):
            report.problems.append(
                f"{name}: line {line_no} is not a valid record (edited or corrupted)"
            )
            continue
        rows.append(obj)
    return rows, report


def _read_csv(path: Path, name: str) -> tuple[list[ChainRecord], VerifyReport]:
    report = VerifyReport()
    records: list[ChainRecord] = []
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != CSV_COLUMNS:
            report.problems.append(f"{name}: header row was altered or removed")
            return records, report
        for row in reader:
            line_no = reader.line_num
            if len(row) != len(CSV_COLUMNS) or not row[0].isdigit():
                report.problems.append(
                    f"{name}: line {line_no} is not a valid record (edited or corrupted)"
                )
                continue
            cells = dict(zip(CSV_COLUMNS, row, strict=True))
            seq, kind, prev, claimed = int(row[0]), row[1], cells["prev_hash"], cells["hash"]
            data = {c: cells[c] for c in CSV_DATA_COLUMNS}
            actual = sha256_hex(canonical(record_content(seq, kind, data, prev)))
            records.append(
                ChainRecord(seq, claimed, prev, actual == claimed, record_label(kind, data))
            )
    return records, report
