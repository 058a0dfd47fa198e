"""The PDF has the expected text on every page and renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from reportlab.pdfbase.pdfmetrics import stringWidth

from dashboard.report import Completeness, export_report, iso_ns
from dashboard.report.pdf import _column_widths, _fit_words, _Styles, _when
from tests.dashboard.reportdata import META, export, sample_sagas

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


def _raw(pdf: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-raw", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout


def test_an_empty_report_is_two_pages_that_say_there_is_nothing(tmp_path: Path) -> None:
    result = export(tmp_path, "pdf", sagas=iter([]))
    pages = _pages(result.files[0])
    assert len(pages) == 2  # the title page, then every section's one sentence
    text = "\n".join(pages)
    assert "No saga falls within this report's scope." in text
    assert "No findings were raised" in text and "No saga was flagged." in text
    assert "Sagas by status" not in text and "Started (UTC)" not in text  # no empty tables


def test_completeness_states_the_period_of_the_source_and_of_the_sagas(tmp_path: Path) -> None:
    text = " ".join(" ".join(_pages(export(tmp_path, "pdf").files[0])).split())
    assert (
        "The source held sagas from 2026-01-01 00:00:00.000 to 2026-01-02 00:00:00.000 UTC "
        "when this report was made." in text
    )
    sagas = list(sample_sagas())
    first = min(s["started_ns"] for s in sagas)
    assert f"The sagas in this report ran from {_when(iso_ns(first))} to " in text
    assert "?" not in text.split("Data completeness")[1].split("Record kind")[0]
    # an export that states no period (the dashboard's, before) says so in words
    out = tmp_path / "unstated.pdf"
    export_report(sample_sagas(), "pdf", out, META, Completeness(sources=("dashboard",)))
    unstated = " ".join(" ".join(_pages(out)).split())
    assert "Records cover ?" not in unstated
    assert "The period the source covers was not recorded with this report." in unstated


def test_table_cells_break_names_between_their_words(tmp_path: Path) -> None:
    saga = next(s for s in sample_sagas() if s["findings"])
    saga["saga_key"] = "order.id:B-107055-00002"
    saga["findings"][0]["step"] = "InventoryReleaseFailed"
    saga["findings"][0]["saga_key"] = saga["saga_key"]
    saga["findings"][0]["kind"] = "compensation_failed"
    text = _raw(export(tmp_path, "pdf", sagas=iter([saga])).files[0])
    # Columns are widened to hold their widest word, at the cost of those with room.
    assert " InventoryReleaseFailed " in text
    assert "order.id:B-\n107055-00002" in text
    for broken in ("InventoryReleaseFa\n", "Finding\ns", "Severit\ny", "compensatio\nn", "Step\ns"):
        assert broken not in text


def test_an_event_step_has_no_duration(tmp_path: Path) -> None:
    saga = next(s for s in sample_sagas() if s["findings"])
    first = saga["steps"][0]
    first.update(name="OrderPlaced", step_type="event", end_ns=first["start_ns"])
    text = _raw(export(tmp_path, "pdf", sagas=iter([saga])).files[0])
    row = next(line for line in text.splitlines() if "OrderPlaced event" in line)
    assert "0 ms" not in row and "–" in row


@pytest.mark.parametrize(
    ("weights", "least", "widths"),
    [
        ([1, 1, 2], [10, 10, 10], [25, 25, 50]),  # room for all: as weighted
        # The first takes what it lacks from the others, in proportion to their spare room.
        ([1, 1, 2], [40, 10, 10], [40, 25 - 15 * 15 / 55, 50 - 15 * 40 / 55]),
        ([1, 1], [80, 80], [50, 50]),  # no room for all: as weighted
    ],
)
def test_columns_are_widened_to_their_least_width(
    weights: list[float], least: list[float], widths: list[float]
) -> None:
    assert _column_widths(weights, least, 100) == pytest.approx(widths)


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("short words here", 60, ["short words here"]),
        ("InventoryReleaseFailed", 60, ["Inventory", "ReleaseFailed"]),
        ("order.id:B-107055-00000", 60, ["order.id:B-", "107055-00000"]),
        ("abcdefabcdefabcdefabcdefabcdef", 40, None),  # no parts: split where it must
    ],
)
def test_fit_words_keeps_every_character(text: str, width: float, lines: list[str] | None) -> None:
    style = _Styles().cell
    fitted = _fit_words(text, style, width)
    if lines is not None:
        assert fitted.split("\n") == lines
    assert fitted.replace("\n", "") == text
    for line in fitted.split("\n"):
        assert stringWidth(line, style.fontName, style.fontSize) <= width or " " in line
