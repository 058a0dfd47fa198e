"""Seeded report inputs shared by the report tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


def write_key_pair(path: Path) -> tuple[Path, Path]:
    """A fresh Ed25519 key pair as PEM files: ``(path.pem, path.pub.pem)``."""
    key = Ed25519PrivateKey.generate()
    private = path.with_suffix(".pem")
    public = path.with_suffix(".pub.pem")
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


AUDIT_META = ReportMeta(
    generated_ns=T0 + 86_400 * SECOND,
    generated_by="auditor",
    host="audit-host",
    sagalens_version="0.1.0",
    title="sagalens audit log",
)
AUDIT_ENTRIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "root",
        "config.loaded",
        {"config_file": "sagalens.yaml", "config_sha256": "ab" * 32, "token_required": False},
    ),
    (
        "alice",
        "finding.acknowledged",
        {
            "finding_id": "f-1",
            "saga_key": "saga.id:order-1004",
            "kind": "stall",
            "step": "reserve_inventory",
            "note": "paged the payments team — ünïcødé",
        },
    ),
    (
        "bob",
        "report.exported",
        {"format": "json", "out": "report.json", "data_digest": "cd" * 32, "sagas": 5},
    ),
    (
        "alice",
        "finding.acknowledged",
        {"finding_id": "f-2", "saga_key": "saga.id:order-1003", "kind": "missing_compensation"},
    ),
    ("carol", "report.exported", {"format": "pdf", "out": "q1.pdf", "signed": True}),
)


def audit_store(
    path: Path, entries: Iterable[tuple[str, str, dict[str, Any]]] = AUDIT_ENTRIES
) -> Path:
    """A real DuckDB store at ``path`` whose audit log holds ``entries``, one second apart."""
    import duckdb

    from collector.audit import append_audit
    from collector.store.writer import migrate

    conn = duckdb.connect(str(path))
    try:
        migrate(conn)
        for i, (actor, action, details) in enumerate(entries):
            append_audit(conn, T0 + i * SECOND, actor, action, details)
    finally:
        conn.close()
    return path
