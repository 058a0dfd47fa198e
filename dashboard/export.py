"""Audit report and audit log exports for the dashboard's download buttons (no Streamlit here)."""

from __future__ import annotations

import io
import socket
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from dashboard.format import count_label
from dashboard.report import (
    AUDIT_LOG_FORMAT,
    Completeness,
    ExportResult,
    ReportMeta,
    export_audit_log,
    export_report,
)

MIME = {
    "pdf": "application/pdf",
    "csv": "text/csv",
    "json": "application/jsonl",
    "ocel": "application/json",
}
SUFFIX = {"pdf": "pdf", "csv": "csv", "json": "jsonl", "ocel": "ocel.json"}
AUDIT_LOG_FILE = "sagalens-audit-log.jsonl"


def _version() -> str:
    try:
        return metadata.version("sagalens")
    except metadata.PackageNotFoundError:
        return "dev"


def local_meta(generated_ns: int, generated_by: str, **scope: Any) -> ReportMeta:
    """Report metadata made on this host by this sagalens: who, when, where, which version."""
    return ReportMeta(
        generated_ns=generated_ns,
        generated_by=generated_by,
        host=socket.gethostname(),
        sagalens_version=_version(),
        **scope,
    )


def export_details(result: ExportResult, meta: ReportMeta, out: str) -> dict[str, Any]:
    """What the audit log records of an export (``report.exported``): the file handed out."""
    details: dict[str, Any] = {"format": result.fmt, "out": out, "data_digest": result.data_digest}
    if result.fmt == AUDIT_LOG_FORMAT:
        details["entries"] = result.record_count
    else:
        details["sagas"] = result.saga_count
        details["scope"] = meta.to_dict()["scope"]
    details["signed"] = result.signed
    details["host"] = meta.host
    return details


def report_file_name(saga_key: str, fmt: str) -> str:
    """A safe download name for the saga's report."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in saga_key)[:80]
    return f"saga-{safe}.{SUFFIX.get(fmt, fmt)}"


def export_saga_zip(
    saga: Mapping[str, Any], fmt: str, *, now_ns: int, source: str, user: str = "dashboard"
) -> tuple[bytes, dict[str, Any]]:
    """A zip with the saga's audit report and its manifest (both are needed to verify it).

    Also returns the details to record in the audit log once the download is made.
    """
    steps = list(saga.get("steps") or [])
    record = {k: v for k, v in saga.items() if k not in ("spans", "events", "logs")}
    meta = local_meta(
        now_ns,
        user,
        saga_key=str(saga["saga_key"]),
        title=f"Saga audit report: {saga['saga_key']}",
    )
    completeness = Completeness(
        sources=(source,),
        record_counts={
            "sagas": 1,
            "steps": len(steps),
            "findings": len(saga.get("findings") or []),
            "spans": len(saga.get("spans") or []),
            "events": len(saga.get("events") or []),
        },
        coverage_from_ns=int(saga.get("started_ns") or 0),
        coverage_to_ns=int(saga.get("ended_ns") or saga.get("last_progress_ns") or 0),
    )
    return _zip_report(
        [record], fmt, meta, completeness, report_file_name(str(saga["saga_key"]), fmt)
    )


def store_completeness(overview: Mapping[str, Any], source: str) -> Completeness:
    """What a report of stored sagas can say of its source: the records the store holds, the
    period its sagas cover and the items refused at ingest (from the source's overview)."""
    counts = overview.get("counts") or {}
    period = overview.get("period") or {}
    first, last = int(period.get("from_ns") or 0), int(period.get("to_ns") or 0)
    if not first:  # a collector from before the overview stated its period
        points = [int(b["bucket_ns"]) for b in overview.get("throughput") or []]
        first, last = (min(points), max(points)) if points else (0, 0)
    gaps = []
    rejected = int(counts.get("rejections") or 0)
    if rejected:
        verb = "was" if rejected == 1 else "were"
        gaps.append(
            f"{count_label(rejected, 'item')} {verb} rejected at ingest (see /api/v1/rejections)"
        )
    return Completeness(
        sources=(source,),
        record_counts={k: int(v) for k, v in counts.items()},
        coverage_from_ns=first,
        coverage_to_ns=last,
        gaps=tuple(gaps),
    )


def export_period_zip(
    sagas: Iterable[Mapping[str, Any]],
    fmt: str,
    *,
    now_ns: int,
    source: str,
    filters: Mapping[str, str],
    user: str = "dashboard",
    overview: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """A zip with the audit report of every saga matching ``filters``, its manifest, and the
    details to record in the audit log; ``overview`` (the source's) states its completeness."""
    meta = local_meta(
        now_ns,
        user,
        from_ns=int(filters.get("from") or 0),
        to_ns=int(filters.get("to") or 0),
        filters={k: v for k, v in filters.items() if v and k not in ("from", "to")},
    )
    completeness = (
        store_completeness(overview, source) if overview is not None else Completeness((source,))
    )
    return _zip_report(sagas, fmt, meta, completeness, f"sagas.{SUFFIX.get(fmt, fmt)}")


def export_audit_log_zip(
    rows: Iterable[Mapping[str, Any]], *, now_ns: int, user: str = "dashboard"
) -> tuple[bytes, dict[str, Any]]:
    """A zip of the whole audit log export and its manifest, and the details to record with it.

    The caller appends ``report.exported`` with these details once the download is made.
    """
    meta = local_meta(now_ns, user, title="sagalens audit log")
    blob, result = _zip_export(AUDIT_LOG_FILE, lambda out: export_audit_log(rows, out, meta))
    return blob, export_details(result, meta, AUDIT_LOG_FILE)


def _zip_report(
    sagas: Iterable[Mapping[str, Any]],
    fmt: str,
    meta: ReportMeta,
    completeness: Completeness,
    name: str,
) -> tuple[bytes, dict[str, Any]]:
    blob, result = _zip_export(name, lambda out: export_report(sagas, fmt, out, meta, completeness))
    return blob, export_details(result, meta, name)


def _zip_export(name: str, write: Callable[[Path], ExportResult]) -> tuple[bytes, ExportResult]:
    """Run ``write`` into a temporary folder and zip what it wrote: the files and the manifest."""
    with tempfile.TemporaryDirectory(prefix="sagalens-report-") as tmp:
        result = write(Path(tmp) / name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path in (*result.files, result.manifest):
                z.write(path, path.name)
        return buf.getvalue(), result
