"""Seeded report inputs shared by the report tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dashboard.report import Completeness, ExportResult, RedactionRules, ReportMeta, export_report
from dashboard.report.sample import generate_sagas

SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
SAMPLE_SIZE = 30
SAMPLE_SEED = 2

META = ReportMeta(
    generated_ns=T0 + 86_400 * SECOND,
    generated_by="auditor",
    host="audit-host",
    sagalens_version="0.1.0",
    from_ns=T0,
    to_ns=T0 + 86_400 * SECOND,
    filters={"type": "any"},
)
COMPLETENESS = Completeness(
    sources=("otlp-http", "rabbitmq"),
    record_counts={"spans": 96, "events": 12},
    coverage_from_ns=T0,
    coverage_to_ns=T0 + 86_400 * SECOND,
    unresolved_records=3,
    gaps=("2 sagas have records that could not be attributed",),
)


def sample_sagas(n: int = SAMPLE_SIZE, seed: int = SAMPLE_SEED) -> Iterator[dict[str, Any]]:
    """The seeded sample: a mix of completed, compensated, stalled and failing sagas."""
    return generate_sagas(n, seed=seed, start_ns=T0)


def export(
    tmp_path: Path,
    fmt: str,
    name: str | None = None,
    sagas: Iterator[dict[str, Any]] | None = None,
    redaction: RedactionRules | None = None,
    sign_key: Path | None = None,
    **kwargs: Any,
) -> ExportResult:
    """Export the sample (or ``sagas``) to ``tmp_path / name``."""
    out = tmp_path / (name or f"report.{fmt}")
    return export_report(
        sample_sagas() if sagas is None else sagas,
        fmt,
        out,
        META,
        COMPLETENESS,
        redaction,
        sign_key,
        **kwargs,
    )
