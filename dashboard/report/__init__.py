"""Audit reports: PDF for people, CSV and JSON Lines for tools, OCEL 2.0 for process mining.

Importable without Streamlit. Builders are pure (records in, text out); ``writer``,
``audit_export`` and ``verify`` are the only modules that touch files.

File convention: an export to ``--out PATH`` writes ``PATH`` and ``PATH.manifest.json`` in the
same directory. ``verify`` accepts either of the two paths.

- ``json``: JSON Lines. Line 1 is the header record (report metadata, scope, completeness,
  redaction rules), then per saga one ``saga`` record followed by its ``step`` and ``finding``
  records, then a ``trailer`` with totals. Each line is ``{"seq", "kind", "data", "prev_hash",
  "hash"}`` where ``hash`` is the SHA-256 of the canonical JSON of the other four fields.
- ``csv``: the same records as rows with fixed columns (``records.CSV_COLUMNS``), each row
  hashed over its ``seq``, ``kind``, data columns and ``prev_hash``.
- ``ocel``: one OCEL 2.0 JSON document (see ``ocel``), covered by its file digest.
- ``pdf``: the audit document, covered by its file digest; every page shows the data digest.

- ``audit-log``: sagalens' own audit log (see ``audit_log``), JSON Lines of the stored rows,
  written by ``export_audit_log`` with the same manifest and checked by the same ``verify``.

The *data digest* is the chain head of the canonical JSON Lines records of the export's data:
equal for every format of the same sagas, metadata and redaction rules, and stated on every
PDF page and in every manifest.
"""

from __future__ import annotations

from .audit_export import export_audit_log
from .audit_log import AUDIT_LOG_FORMAT, chain_entry, verify_audit_log
from .chain import VerifyReport
from .errors import ReportError, VerifyError
from .meta import FORMATS, Completeness, ExportResult, ReportMeta, iso_ns
from .redaction import RedactionRules
from .verify import verify
from .writer import export_report, manifest_path

__all__ = [
    "AUDIT_LOG_FORMAT",
    "FORMATS",
    "Completeness",
    "ExportResult",
    "RedactionRules",
    "ReportError",
    "ReportMeta",
    "VerifyError",
    "VerifyReport",
    "chain_entry",
    "export_audit_log",
    "export_report",
    "iso_ns",
    "manifest_path",
    "verify",
    "verify_audit_log",
]
