"""Export of sagalens' own audit log as a file plus manifest, verifiable like a report.

``export_audit_log(rows, out, meta)`` writes ``out`` (JSON Lines, see ``audit_log``) and
``out.manifest.json`` whose single file entry has ``format: "audit-log"``, the entry count as
``records`` and the last entry's hash as ``chain_head``. The whole log is exported: only a log
read from its first entry can be checked back to the genesis hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .audit_log import AUDIT_LOG_FORMAT, audit_log_line
from .chain import GENESIS
from .errors import ReportError
from .manifest import MANIFEST_FORMAT
from .meta import ExportResult, ReportMeta
from .writer import HashingWriter, output_path, read_signing_key, staged, write_manifest

AUDIT_RECORD_FORMAT = "sagalens-audit-log/1"


def export_audit_log(
    rows: Iterable[Mapping[str, Any]],
    out: Path,
    meta: ReportMeta,
    sign_key: Path | None = None,
) -> ExportResult:
    """Write the audit log ``rows`` (in ``seq`` order) to ``out`` plus ``out.manifest.json``.

    ``sign_key`` is an Ed25519 PEM private key that signs the manifest. ``record_count`` of the
    result is the number of entries and ``data_digest`` the chain head (the last entry's hash).
    """
    key = read_signing_key(sign_key)
    out = output_path(out)
    count, head = 0, GENESIS
    try:
        with staged(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as handle:
            writer = HashingWriter(handle)
            for row in rows:
                writer.write(audit_log_line(row))
                count += 1
                head = str(row.get("hash", ""))
        entry = {
            "name": out.name,
            "format": AUDIT_LOG_FORMAT,
            "sha256": writer.hexdigest(),
            "bytes": writer.size,
            "records": count,
            "chain_head": head,
        }
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "report": {"record_format": AUDIT_RECORD_FORMAT, "report": meta.to_dict()},
            "data_digest": head,
            "data_records": count,
            "files": [entry],
        }
        mpath = write_manifest(out, manifest, key)
    except OSError as exc:
        raise ReportError(f"cannot write audit log export {out}: {exc}") from exc
    return ExportResult(
        fmt=AUDIT_LOG_FORMAT,
        files=(out,),
        manifest=mpath,
        data_digest=head,
        record_count=count,
        saga_count=0,
        signed=key is not None,
    )
