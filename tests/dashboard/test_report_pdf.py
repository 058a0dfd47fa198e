"""The PDF has the expected text on every page and renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboard.reportdata import export, sample_sagas

pytestmark = pytest.mark.skipif(
    not (shutil.which("pdftotext") and shutil.which("pdftoppm")), reason="needs poppler-utils"
)


def _pages(pdf: Path) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    return text.split("\f")[:-1]


def test_pdf_text_covers_scope_summary_findings_and_sagas(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf")
    text = "\n".join(_pages(result.files[0]))
    for expected in (
        "Saga audit report",
        "2026-01-01 00:00:00.000 to 2026-01-02 00:00:00.000 (UTC)",
        "auditor on audit-host",
        "0.1.0",
        "type = any",
        "Sagas by status",
        "Compensation coverage",
        "Fully compensated",
        "Data completeness",
        "2 sagas have records that could not be attributed",
        "3 records could not be attributed to a saga.",
        "Findings",
        "missing compensation",
        "Flagged sagas",
        "Saga register",
        "Redaction rules applied",
        "card.number",
    ):
        assert expected in text, expected
    flagged = [s for s in sample_sagas() if s["findings"] or s["status"] != "completed"]
    for saga in flagged:
        if saga["status"] != "compensated":
            assert f"{saga['saga_key']} · {saga['saga_type']}" in text
    assert "4111 1111" not in text


def test_every_page_has_digest_and_page_n_of_m(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf")
    pages = _pages(result.files[0])
    assert len(pages) > 3
    for n, page in enumerate(pages, start=1):
        assert f"Page {n} of {len(pages)}" in page
        assert result.data_digest in page


def test_pdf_renders_to_png(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf")
    out = tmp_path / "png"
    out.mkdir()
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", str(result.files[0]), str(out / "page")], check=True
    )
    pngs = sorted(out.glob("page-*.png"))
    assert len(pngs) == len(_pages(result.files[0]))
    assert all(p.stat().st_size > 2000 for p in pngs)


def test_pdf_caps_flagged_sagas_and_says_how_many_were_omitted(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf", max_pdf_sagas=2)
    flagged = sum(
        1
        for s in sample_sagas()
        if s["findings"] or s["status"] in ("stalled", "failed") or "compensation_" in s["status"]
    )
    assert result.omitted_sagas == flagged - 2 > 0
    text = "\n".join(_pages(result.files[0]))
    assert f"2 of {flagged} flagged sagas are shown" in text
    assert f"{flagged - 2} flagged sagas are omitted" in text
