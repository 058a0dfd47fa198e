"""The I/O edge of exporting: runs the pure builders and writes files, digests and the manifest.

File convention: ``export_report(..., out=Path("report.json"))`` writes ``report.json`` and
``report.json.manifest.json`` next to it. Files are written to a temporary name and renamed, so
a crash never leaves a half-written report that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import ReportError
from .manifest import MANIFEST_FORMAT, MANIFEST_SUFFIX, load_private_key, sign_manifest
from .meta import FORMATS, Completeness, ExportResult, ReportMeta
from .ocel import OcelBuilder
from .pdf import render_pdf
from .records import Chain, Totals, build_csv, build_jsonl, header_data, report_records
from .redaction import RedactionRules
from .summary import PdfSummary


def manifest_path(out: Path) -> Path:
    """Where the manifest of the export written to ``out`` lives."""
    return out.with_name(out.name + MANIFEST_SUFFIX)


def read_signing_key(sign_key: Path | None) -> Ed25519PrivateKey | None:
    """The Ed25519 key that signs the manifest, or None when the export is not signed."""
    if sign_key is None:
        return None
    try:
        return load_private_key(Path(sign_key).read_bytes())
    except OSError as exc:
        raise ReportError(f"cannot read signing key {sign_key}: {exc}") from exc


def output_path(out: Path) -> Path:
    """``out`` as a Path, refused when it names a directory."""
    out = Path(out)
    if out.is_dir():
        raise ReportError(f"{out} is a directory; --out names the report file")
    return out


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary path next to ``out`` that is renamed to ``out`` when the block succeeds.

    Raises ``OSError``. A failed block leaves neither ``out`` nor the temporary file behind.
    """
    tmp = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_manifest(
    out: Path, manifest: dict[str, Any], key: Ed25519PrivateKey | None = None
) -> Path:
    """Sign ``manifest`` when a key is given and write it next to ``out``; return its path.

    Raises ``OSError``; the manifest is renamed into place last, so an export is never seen
    with a manifest that describes files not yet written.
    """
    if key is not None:
        manifest = sign_manifest(manifest, key)
    mpath = manifest_path(out)
    mtmp = mpath.with_name(mpath.name + ".partial")
    mtmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(mtmp, mpath)
    return mpath


class HashingWriter:
    """Writes text to a file while computing its SHA-256 and size."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        self._sha.update(data)
        self.size += len(data)
        self._handle.write(text)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _tee(
    records: Iterable[tuple[str, Mapping[str, Any]]], chain: Chain
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Pass records on while linking them into the canonical data chain."""
    for kind, data in records:
        chain.line(kind, data)
        yield kind, data


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def export_report(
    sagas: Iterable[Mapping[str, Any]],
    fmt: str,
    out: Path,
    meta: ReportMeta,
    completeness: Completeness,
    redaction: RedactionRules | None = None,
    sign_key: Path | None = None,
    *,
    max_pdf_sagas: int = 50,
) -> ExportResult:
    """Stream ``sagas`` into a ``fmt`` report at ``out`` plus ``out.manifest.json``.

    ``redaction=None`` applies ``RedactionRules.defaults()``; pass ``RedactionRules.disabled()``
    to export unredacted. ``sign_key`` is an Ed25519 PEM private key that signs the manifest.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    rules = RedactionRules.defaults() if redaction is None else redaction
    key = read_signing_key(sign_key)
    out = output_path(out)
    totals = Totals()
    data_chain = Chain()
    records = report_records(sagas, meta, completeness, rules, totals)
    entry: dict[str, Any] = {"name": out.name, "format": fmt}
    omitted = 0
    try:
        with staged(out) as tmp:
            if fmt == "pdf":
                summary = PdfSummary(max_sagas=max_pdf_sagas)
                summary.consume(_tee(records, data_chain))
                omitted = summary.omitted_sagas
                render_pdf(summary, data_chain.head, str(tmp))
                entry["sha256"] = _file_sha256(tmp)
                entry["bytes"] = tmp.stat().st_size
            else:
                with tmp.open("w", encoding="utf-8", newline="") as handle:
                    writer = HashingWriter(handle)
                    if fmt == "json":
                        for text in build_jsonl(records, data_chain):
                            writer.write(text)
                        entry["chain_head"] = data_chain.head
                        entry["records"] = data_chain.seq
                    elif fmt == "csv":
                        csv_chain = Chain()
                        for text in build_csv(_tee(records, data_chain), csv_chain):
                            writer.write(text)
                        entry["chain_head"] = csv_chain.head
                        entry["records"] = csv_chain.seq
                    else:
                        _write_ocel(_tee(records, data_chain), writer, tmp, data_chain)
                entry["sha256"] = writer.hexdigest()
                entry["bytes"] = writer.size
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "report": header_data(meta, completeness, rules),
            "data_digest": data_chain.head,
            "data_records": data_chain.seq,
            "totals": totals.to_dict(),
            "files": [entry],
        }
        if omitted:
            manifest["pdf_omitted_sagas"] = omitted
        mpath = write_manifest(out, manifest, key)
    except OSError as exc:
        raise ReportError(f"cannot write report {out}: {exc}") from exc
    return ExportResult(
        fmt=fmt,
        files=(out,),
        manifest=mpath,
        data_digest=data_chain.head,
        record_count=data_chain.seq,
        saga_count=totals.sagas,
        signed=key is not None,
        omitted_sagas=omitted,
    )


def _write_ocel(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    writer: HashingWriter,
    tmp: Path,
    data_chain: Chain,
) -> None:
    """OCEL needs events and objects in two arrays; objects are spooled to a side file."""
    side = tmp.with_name(tmp.name + ".objects")
    builder = OcelBuilder()
    try:
        with side.open("w+", encoding="utf-8") as objects:
            for text in builder.begin():
                writer.write(text)
            for part, text in builder.feed(records):
                if part == "event":
                    writer.write(text)
                else:
                    objects.write(text)
            for text in builder.between():
                writer.write(text)
            objects.seek(0)
            for block in iter(lambda: objects.read(1 << 16), ""):
                writer.write(block)
            for text in builder.end(data_chain.head):
                writer.write(text)
    finally:
        if side.exists():
            side.unlink()
